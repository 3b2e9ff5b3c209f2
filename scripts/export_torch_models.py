"""Exports real architectures the way users export them, for benchmarks
on a machine with torch and transformers (the GPU machine has both):
torchvision's ResNet50 (batch 1, 224x224) and transformers' BERT-base
(input_ids only, sequence 128), through torch.onnx.export with
dynamo=False at opset 17, random weights, static shapes.

    python3 scripts/export_torch_models.py OUT_DIR

Writes OUT_DIR/resnet50.onnx and OUT_DIR/bert_base.onnx.
"""

import os
import sys

import torch


def export(model, args, path, names):
    model.eval()
    with torch.no_grad():
        torch.onnx.export(model, args, path, dynamo=False, opset_version=17, input_names=names)
    print(f"wrote {path}")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    import torchvision

    export(torchvision.models.resnet50(), (torch.randn(1, 3, 224, 224),), os.path.join(out, "resnet50.onnx"), ["input"])
    import transformers

    class Bert(torch.nn.Module):
        """BERT-base called with input_ids alone (keywords, as recent
        transformers versions take them), giving the last hidden state."""

        def __init__(self):
            super().__init__()
            self.bert = transformers.BertModel(transformers.BertConfig())

        def forward(self, input_ids):
            return self.bert(input_ids=input_ids).last_hidden_state

    ids = torch.randint(0, 30000, (1, 128))
    export(Bert(), (ids,), os.path.join(out, "bert_base.onnx"), ["input_ids"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
