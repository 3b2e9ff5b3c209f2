//! Runs a bundle's WebGPU variant natively through wgpu (Vulkan).
//!
//! [`Gpu`] is one adapter and device, shared by every session. A
//! [`Session`] creates all buffers, pipelines and bind groups once at load;
//! each [`Session::run`] writes the inputs, records every dispatch into one
//! command encoder, and reads the outputs back.

use wpc_ir::Tensor;

use crate::device_data::{Word, from_words, to_bytes};
use crate::manifest::{DeviceTensor, TensorInfo, Variant, WebGpuVariant};
use crate::{Bundle, Error, Result};

/// A WebGPU device (wgpu on Vulkan) with every limit and feature its
/// adapter offers.
pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
}

impl Gpu {
    /// Opens the first Vulkan adapter (lavapipe on CPU-only machines).
    pub fn new() -> Result<Gpu> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = wgpu::Backends::VULKAN;
        let instance = wgpu::Instance::new(desc);
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        }))
        .map_err(|e| {
            Error::NoAdapter(format!(
                "{e} (is a Vulkan driver installed? on CPU-only machines install mesa-vulkan-drivers)"
            ))
        })?;
        let wanted = wgpu::Features::SHADER_F16;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("wpc"),
            required_features: adapter.features() & wanted,
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .map_err(|e| Error::NoAdapter(e.to_string()))?;
        Ok(Gpu {
            device,
            queue,
            info: adapter.get_info(),
        })
    }

    /// "name (driver, backend)", for reports.
    pub fn describe(&self) -> String {
        format!(
            "{} ({} {}, {:?})",
            self.info.name, self.info.driver, self.info.driver_info, self.info.backend
        )
    }

    /// The value of a `GPUSupportedLimits` entry, by its spec name.
    fn limit(&self, name: &str) -> Option<u64> {
        let l = self.device.limits();
        Some(match name {
            "maxComputeWorkgroupSizeX" => l.max_compute_workgroup_size_x.into(),
            "maxComputeWorkgroupSizeY" => l.max_compute_workgroup_size_y.into(),
            "maxComputeInvocationsPerWorkgroup" => l.max_compute_invocations_per_workgroup.into(),
            "maxComputeWorkgroupStorageSize" => l.max_compute_workgroup_storage_size.into(),
            "maxComputeWorkgroupsPerDimension" => l.max_compute_workgroups_per_dimension.into(),
            "maxStorageBufferBindingSize" => l.max_storage_buffer_binding_size,
            "maxBufferSize" => l.max_buffer_size,
            "maxStorageBuffersPerShaderStage" => l.max_storage_buffers_per_shader_stage.into(),
            _ => return None,
        })
    }

    /// Checks the device offers what `variant` requires, naming what is missing.
    fn check(&self, variant: &WebGpuVariant) -> Result<()> {
        for f in &variant.requires.features {
            let have = match f.as_str() {
                "shader-f16" => self.device.features().contains(wgpu::Features::SHADER_F16),
                _ => false,
            };
            if !have {
                return Err(Error::Unsatisfied(format!(
                    "feature '{f}' is not available"
                )));
            }
        }
        for (name, &need) in &variant.requires.limits {
            let have = self
                .limit(name)
                .ok_or_else(|| Error::Unsatisfied(format!("unknown limit '{name}'")))?;
            if have < need {
                return Err(Error::Unsatisfied(format!(
                    "{name} is {have}, the bundle needs {need}"
                )));
            }
        }
        Ok(())
    }

    /// Runs `f`, turning any validation or out-of-memory error wgpu reports
    /// during it into an [`Error::Gpu`] that names `what`.
    fn scoped<T>(&self, what: &str, f: impl FnOnce() -> T) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = f();
        let errors = [
            pollster::block_on(validation.pop()),
            pollster::block_on(oom.pop()),
        ];
        match errors.into_iter().flatten().next() {
            Some(e) => Err(Error::Gpu(format!("{what}: {e}"))),
            None => Ok(value),
        }
    }
}

/// A loaded WebGPU variant, ready to run any number of times.
pub struct Session<'g> {
    gpu: &'g Gpu,
    pipelines: Vec<wgpu::ComputePipeline>,
    buffers: Vec<wgpu::Buffer>,
    steps: Vec<(usize, wgpu::BindGroup, [u32; 3])>,
    inputs: Vec<(TensorInfo, DeviceTensor)>,
    outputs: Vec<(TensorInfo, DeviceTensor, wgpu::Buffer)>,
}

/// Rounds a byte size up to what a wgpu buffer may have (non-zero, 4-aligned).
fn buffer_size(bytes: u64) -> u64 {
    bytes.max(4).div_ceil(4) * 4
}

fn word_of(t: &DeviceTensor) -> Result<Word> {
    Word::parse(&t.word).ok_or_else(|| {
        Error::format(
            "manifest.json",
            format!("unknown device word type '{}'", t.word),
        )
    })
}

impl<'g> Session<'g> {
    /// Creates every buffer, pipeline and bind group of the bundle's
    /// WebGPU variant and uploads the weights.
    pub fn load(gpu: &'g Gpu, bundle: &Bundle) -> Result<Session<'g>> {
        let m = &bundle.manifest;
        let variant = m
            .variants
            .iter()
            .find_map(|v| match v {
                Variant::WebGpu(w) => Some(w),
                _ => None,
            })
            .ok_or_else(|| Error::Unsatisfied("the bundle has no WebGPU variant".into()))?;
        gpu.check(variant)?;
        let device = &gpu.device;
        let pipelines = variant
            .shaders
            .iter()
            .map(|file| {
                let source = std::str::from_utf8(bundle.file(file)?)
                    .map_err(|_| Error::format(file.clone(), "WGSL is not UTF-8"))?;
                gpu.scoped(&format!("creating the pipeline of {file}"), || {
                    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(file),
                        source: wgpu::ShaderSource::Wgsl(source.into()),
                    });
                    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some(file),
                        layout: None,
                        module: &module,
                        entry_point: Some("main"),
                        compilation_options: Default::default(),
                        cache: None,
                    })
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let usage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC;
        let buffers = gpu.scoped("allocating buffers", || {
            variant
                .buffers
                .iter()
                .map(|b| {
                    device.create_buffer(&wgpu::BufferDescriptor {
                        label: None,
                        size: buffer_size(b.bytes),
                        usage,
                        mapped_at_creation: false,
                    })
                })
                .collect::<Vec<_>>()
        })?;
        for (decl, buffer) in variant.buffers.iter().zip(&buffers) {
            if let Some(r) = &decl.init {
                let shard = m.shards.get(r.shard).ok_or_else(|| {
                    Error::format(
                        "manifest.json",
                        format!("buffer refers to missing shard {}", r.shard),
                    )
                })?;
                let bytes = bundle.file(&shard.file)?;
                let range = usize::try_from(r.offset)
                    .ok()
                    .zip(usize::try_from(r.offset + r.bytes).ok());
                let slice = range.and_then(|(a, b)| bytes.get(a..b)).ok_or_else(|| {
                    Error::format(
                        shard.file.clone(),
                        format!("range {}+{} is outside the shard", r.offset, r.bytes),
                    )
                })?;
                gpu.queue.write_buffer(buffer, 0, slice);
            }
        }
        let steps = variant
            .dispatches
            .iter()
            .map(|d| {
                let pipeline = pipelines.get(d.shader).ok_or_else(|| {
                    Error::format(
                        "manifest.json",
                        format!("dispatch of '{}' names missing shader {}", d.node, d.shader),
                    )
                })?;
                let entries = d
                    .bindings
                    .iter()
                    .enumerate()
                    .map(|(i, &b)| {
                        let buffer = buffers.get(b).ok_or_else(|| {
                            Error::format(
                                "manifest.json",
                                format!("dispatch of '{}' binds missing buffer {b}", d.node),
                            )
                        })?;
                        Ok(wgpu::BindGroupEntry {
                            binding: i as u32,
                            resource: buffer.as_entire_binding(),
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let group = gpu.scoped(&format!("binding the buffers of '{}'", d.node), || {
                    device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: None,
                        layout: &pipeline.get_bind_group_layout(0),
                        entries: &entries,
                    })
                })?;
                Ok((d.shader, group, d.workgroups))
            })
            .collect::<Result<Vec<_>>>()?;
        let inputs = m
            .inputs
            .iter()
            .cloned()
            .zip(variant.inputs.iter().cloned())
            .collect();
        let outputs = m
            .outputs
            .iter()
            .cloned()
            .zip(variant.outputs.iter().cloned())
            .map(|(info, dev)| {
                let readback = device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("readback"),
                    size: buffer_size(dev.elements * 4),
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                (info, dev, readback)
            })
            .collect();
        Ok(Session {
            gpu,
            pipelines,
            buffers,
            steps,
            inputs,
            outputs,
        })
    }

    /// Uploads `inputs` (in model-input order), runs every dispatch and
    /// returns the outputs.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        self.write_inputs(inputs)?;
        self.execute(true)?;
        self.read_outputs()
    }

    fn write_inputs(&self, inputs: &[Tensor]) -> Result<()> {
        let infos: Vec<TensorInfo> = self.inputs.iter().map(|(i, _)| i.clone()).collect();
        crate::manifest::check_inputs(&infos, inputs)?;
        for (t, (info, dev)) in inputs.iter().zip(&self.inputs) {
            let bytes = to_bytes(t, word_of(dev)?, &format!("input '{}'", info.name))?;
            if !bytes.is_empty() {
                self.gpu
                    .queue
                    .write_buffer(&self.buffers[dev.buffer], 0, &bytes);
            }
        }
        Ok(())
    }

    /// Records every dispatch into one command encoder, submits it and
    /// waits; with `readback`, also copies the outputs to mappable buffers.
    pub fn execute(&self, readback: bool) -> Result<()> {
        let device = &self.gpu.device;
        self.gpu.scoped("running the model", || {
            let mut encoder =
                device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
                for (pipeline, group, [x, y, z]) in &self.steps {
                    pass.set_pipeline(&self.pipelines[*pipeline]);
                    pass.set_bind_group(0, group, &[]);
                    pass.dispatch_workgroups(*x, *y, *z);
                }
            }
            if readback {
                for (_, dev, staging) in &self.outputs {
                    let bytes = dev.elements * 4;
                    if bytes > 0 {
                        encoder.copy_buffer_to_buffer(
                            &self.buffers[dev.buffer],
                            0,
                            staging,
                            0,
                            bytes,
                        );
                    }
                }
            }
            self.gpu.queue.submit([encoder.finish()]);
        })?;
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(e.to_string()))?;
        Ok(())
    }

    fn read_outputs(&self) -> Result<Vec<Tensor>> {
        let mut out = Vec::with_capacity(self.outputs.len());
        for (info, dev, staging) in &self.outputs {
            let shape: Vec<usize> = info.bound.iter().map(|&d| d as usize).collect();
            let bytes = dev.elements * 4;
            let words: Vec<u32> = if bytes == 0 {
                Vec::new()
            } else {
                let slice = staging.slice(0..bytes);
                let (tx, rx) = std::sync::mpsc::channel();
                slice.map_async(wgpu::MapMode::Read, move |r| {
                    let _ = tx.send(r);
                });
                self.gpu
                    .device
                    .poll(wgpu::PollType::wait_indefinitely())
                    .map_err(|e| Error::Gpu(e.to_string()))?;
                rx.recv()
                    .map_err(|e| Error::Gpu(e.to_string()))?
                    .map_err(|e| Error::Gpu(format!("reading output '{}': {e}", info.name)))?;
                let view = slice
                    .get_mapped_range()
                    .map_err(|e| Error::Gpu(format!("reading output '{}': {e}", info.name)))?;
                let words = view
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                drop(view);
                staging.unmap();
                words
            };
            out.push(from_words(&words, word_of(dev)?, info.dtype()?, shape));
        }
        Ok(out)
    }
}
