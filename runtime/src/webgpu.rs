//! Runs a bundle's WebGPU variant natively through wgpu (Vulkan).
//!
//! [`Gpu`] is one adapter and device, shared by every session. A
//! [`Session`] creates all buffers, pipelines and bind groups once at load;
//! each [`Session::run`] writes the inputs, records every dispatch into one
//! command encoder, and reads the outputs back. Where the bundle's sizes
//! are dynamic, each run finds them from the inputs' shapes, writes the
//! sizes each kernel reads into its uniform buffer, and dispatches the
//! workgroups those sizes need.

use std::sync::Mutex;

use wpc_ir::Tensor;

use crate::device_data::{Word, from_words, to_bytes};
use crate::manifest::{
    DeviceTensor, DimRange, Dispatch, RunSizes, SizeExpr, TensorInfo, Variant, WebGpuVariant,
};
use crate::{Bundle, BundleError, Error, Result};

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

    /// Median time to copy `bytes` (rounded down to a multiple of 4)
    /// from one device buffer to another, one submission each, after
    /// `warmup` untimed copies: the memory bandwidth WebGPU reaches on
    /// this adapter, to hold memory-bound kernels against.
    pub fn time_copy(
        &self,
        bytes: u64,
        warmup: usize,
        iterations: usize,
    ) -> Result<std::time::Duration> {
        let bytes = bytes / 4 * 4;
        let limit = self.device.limits().max_buffer_size;
        if bytes == 0 || bytes > limit {
            return Err(Error::Gpu(format!(
                "cannot copy {bytes} bytes: buffers here hold 4 to {limit} bytes"
            )));
        }
        let buffer = |usage| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("copy bandwidth"),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        let (from, to) = self.scoped("allocating the copy buffers", || {
            (
                buffer(wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST),
                buffer(wgpu::BufferUsages::COPY_DST),
            )
        })?;
        let copy = || -> Result<std::time::Duration> {
            let start = std::time::Instant::now();
            let mut encoder = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            encoder.copy_buffer_to_buffer(&from, 0, &to, 0, bytes);
            self.queue.submit([encoder.finish()]);
            self.device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| Error::Gpu(e.to_string()))?;
            Ok(start.elapsed())
        };
        for _ in 0..warmup {
            copy()?;
        }
        let mut times = (0..iterations.max(1))
            .map(|_| copy())
            .collect::<Result<Vec<_>>>()?;
        times.sort();
        Ok(times[times.len() / 2])
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
    steps: Vec<Step>,
    dims: Vec<DimRange>,
    inputs: Vec<(TensorInfo, DeviceTensor)>,
    outputs: Vec<(TensorInfo, DeviceTensor, wgpu::Buffer)>,
    /// Where the sizes only the data decides are read back to, when some
    /// dispatch counts one (`u32`s, one per count of a dispatch).
    count_readback: Option<wgpu::Buffer>,
    /// The plan at the sizes of the last run (what [`Session::execute`]
    /// runs); for a static bundle, made at load. `None` until a dynamic
    /// bundle first runs.
    at: Mutex<Option<AtSizes>>,
}

/// What one set of dynamic sizes makes of the plan, worked out once per
/// [`Session::run`] so that [`Session::execute`] (what benchmarks time)
/// only records dispatches.
#[derive(Clone)]
struct AtSizes {
    /// The sizes the inputs give.
    given: RunSizes,
    /// Each step's workgroup counts (empty where some size is counted
    /// while the model runs: then worked out as it runs).
    counts: Vec<[u32; 3]>,
    /// Each output's shape.
    output_shapes: Vec<Vec<usize>>,
}

/// One dispatch, ready to record.
struct Step {
    pipeline: usize,
    group: wgpu::BindGroup,
    workgroups: [u32; 3],
    /// Workgroup counts computed per run, where sizes are dynamic.
    groups: Option<[SizeExpr; 3]>,
    /// The sizes the kernel reads, and the uniform buffer they go to.
    params: Option<(Vec<SizeExpr>, wgpu::Buffer)>,
    /// The sizes only the data decides that this dispatch counts, each
    /// with the buffer it leaves it in.
    counts: Vec<(String, usize)>,
    node: String,
}

/// Bytes of the uniform buffer holding `n` `u32` parameters
/// (`array<vec4<u32>, ceil(n / 4)>`).
fn params_bytes(n: usize) -> u64 {
    (n.div_ceil(4) * 16) as u64
}

impl Session<'_> {
    /// The workgroup counts and output shapes at `sizes`.
    fn at_sizes(&self, sizes: &RunSizes) -> Result<AtSizes> {
        Ok(AtSizes {
            given: sizes.clone(),
            counts: self
                .steps
                .iter()
                .map(|s| s.workgroups_at(sizes))
                .collect::<Result<_>>()?,
            output_shapes: self
                .outputs
                .iter()
                .map(|(info, _, _)| Ok(info.shape_at(sizes)?))
                .collect::<Result<_>>()?,
        })
    }

    /// The plan of the last run.
    fn current(&self) -> Result<AtSizes> {
        self.at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| {
                Error::Bundle(BundleError::Input(
                    "the bundle's sizes are dynamic: run() it before execute()".into(),
                ))
            })
    }
}

impl Step {
    /// The workgroup counts at `sizes`.
    fn workgroups_at(&self, sizes: &RunSizes) -> Result<[u32; 3]> {
        let Some(groups) = &self.groups else {
            return Ok(self.workgroups);
        };
        let mut out = [0u32; 3];
        for (o, e) in out.iter_mut().zip(groups) {
            *o = eval_u32(sizes, e, &self.node)?;
        }
        Ok(out)
    }
}

/// A size expression's value at `sizes`, as a `u32`.
fn eval_u32(sizes: &RunSizes, e: &SizeExpr, node: &str) -> Result<u32> {
    sizes
        .eval(e)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| {
            Error::Bundle(BundleError::Input(format!(
                "the sizes {sizes} give the dispatch of '{node}' no 32-bit size"
            )))
        })
}

/// The uniform buffer holding the sizes `d`'s kernel reads, if it reads
/// any.
fn params_buffer(device: &wgpu::Device, d: &Dispatch) -> Option<wgpu::Buffer> {
    (!d.params.is_empty()).then(|| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: params_bytes(d.params.len()),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    })
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
                let mut entries = d
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
                let params = params_buffer(device, d);
                if let Some(p) = &params {
                    entries.push(wgpu::BindGroupEntry {
                        binding: d.bindings.len() as u32,
                        resource: p.as_entire_binding(),
                    });
                }
                let group = gpu.scoped(&format!("binding the buffers of '{}'", d.node), || {
                    device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: None,
                        layout: &pipeline.get_bind_group_layout(0),
                        entries: &entries,
                    })
                })?;
                Ok(Step {
                    pipeline: d.shader,
                    group,
                    workgroups: d.workgroups,
                    groups: d.groups.clone(),
                    params: params.map(|p| (d.params.clone(), p)),
                    counts: (d.counts.iter())
                        .map(|c| {
                            buffers
                                .get(c.buffer)
                                .map(|_| (c.dim.clone(), c.buffer))
                                .ok_or_else(|| {
                                    Error::format(
                                        "manifest.json",
                                        format!(
                                            "'{}' counts into missing buffer {}",
                                            d.node, c.buffer
                                        ),
                                    )
                                })
                        })
                        .collect::<Result<_>>()?,
                    node: d.node.clone(),
                })
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
        let most_counts = steps.iter().map(|s| s.counts.len()).max().unwrap_or(0);
        let count_readback = (most_counts > 0).then(|| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("count readback"),
                size: 4 * most_counts as u64,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        let session = Session {
            gpu,
            pipelines,
            buffers,
            steps,
            dims: m.dims.clone(),
            inputs,
            outputs,
            count_readback,
            at: Mutex::new(None),
        };
        if m.dims.is_empty() {
            let at = session.at_sizes(&RunSizes::default())?;
            *session.at.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
        }
        Ok(session)
    }

    /// Uploads `inputs` (in model-input order), runs every dispatch and
    /// returns the outputs.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let sizes = self.write_inputs(inputs)?;
        let at = match self.count_readback {
            Some(_) => AtSizes {
                given: sizes,
                counts: Vec::new(),
                output_shapes: Vec::new(),
            },
            None => {
                self.write_params(&sizes, &self.steps)?;
                self.at_sizes(&sizes)?
            }
        };
        *self.at.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
        self.execute(true)?;
        self.read_outputs()
    }

    /// Checks `inputs` and finds the dynamic sizes from their shapes, then
    /// writes them to the device.
    fn write_inputs(&self, inputs: &[Tensor]) -> Result<RunSizes> {
        let infos: Vec<TensorInfo> = self.inputs.iter().map(|(i, _)| i.clone()).collect();
        let sizes = crate::manifest::bind_inputs(&self.dims, &infos, inputs)?;
        for (t, (info, dev)) in inputs.iter().zip(&self.inputs) {
            let bytes = to_bytes(t, word_of(dev)?, &format!("input '{}'", info.name))?;
            if !bytes.is_empty() {
                self.gpu
                    .queue
                    .write_buffer(&self.buffers[dev.buffer], 0, &bytes);
            }
        }
        Ok(sizes)
    }

    /// Writes the parameters of `steps`' kernels at `sizes`.
    fn write_params(&self, sizes: &RunSizes, steps: &[Step]) -> Result<()> {
        for step in steps {
            if let Some((exprs, buffer)) = &step.params {
                let mut words = vec![0u32; exprs.len().div_ceil(4) * 4];
                for (w, e) in words.iter_mut().zip(exprs) {
                    *w = eval_u32(sizes, e, &step.node)?;
                }
                let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
                self.gpu.queue.write_buffer(buffer, 0, &bytes);
            }
        }
        Ok(())
    }

    /// Records every dispatch into one command encoder, submits it and
    /// waits; with `readback`, also copies the outputs to mappable
    /// buffers. Runs at the sizes of the last [`Session::run`].
    pub fn execute(&self, readback: bool) -> Result<()> {
        let at = self.current()?;
        if self.count_readback.is_some() {
            let at = self.execute_counting(at.given, readback)?;
            *self.at.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
            return Ok(());
        }
        self.submit(&self.steps, &at.counts, |encoder| {
            if readback {
                self.copy_outputs(encoder, &at.output_shapes);
            }
        })?;
        self.wait()
    }

    /// Runs a bundle in which some dispatch counts a size only the data
    /// decides: the dispatches up to each such one are submitted, its
    /// counts read back, and the rest sized by them (one round trip per
    /// counting dispatch). Returns the plan at the sizes the run took.
    fn execute_counting(&self, mut sizes: RunSizes, readback: bool) -> Result<AtSizes> {
        let readback_buffer = self.count_readback.as_ref().expect("counting bundle");
        let mut start = 0;
        while start < self.steps.len() {
            let end = (self.steps[start..].iter())
                .position(|s| !s.counts.is_empty())
                .map_or(self.steps.len(), |p| start + p + 1);
            let segment = &self.steps[start..end];
            self.write_params(&sizes, segment)?;
            let counts = (segment.iter())
                .map(|s| s.workgroups_at(&sizes))
                .collect::<Result<Vec<_>>>()?;
            let counted = &segment.last().expect("non-empty").counts;
            self.submit(segment, &counts, |encoder| {
                for (k, (_, buffer)) in counted.iter().enumerate() {
                    let to = 4 * k as u64;
                    encoder.copy_buffer_to_buffer(
                        &self.buffers[*buffer],
                        0,
                        readback_buffer,
                        to,
                        4,
                    );
                }
            })?;
            self.wait()?;
            if !counted.is_empty() {
                let words = self.read_words(readback_buffer, 4 * counted.len() as u64, "counts")?;
                for ((dim, _), n) in counted.iter().zip(words) {
                    self.check_count(dim, n)?;
                    sizes.0.insert(dim.clone(), i64::from(n));
                }
            }
            start = end;
        }
        let output_shapes = (self.outputs.iter())
            .map(|(info, _, _)| Ok(info.shape_at(&sizes)?))
            .collect::<Result<Vec<_>>>()?;
        if readback {
            self.submit(&[], &[], |encoder| {
                self.copy_outputs(encoder, &output_shapes)
            })?;
            self.wait()?;
        }
        Ok(AtSizes {
            given: sizes,
            counts: Vec::new(),
            output_shapes,
        })
    }

    /// A count a kernel gave must lie within its dim's range (what the
    /// buffers after it were made for).
    fn check_count(&self, dim: &str, n: u32) -> Result<()> {
        let range = self.dims.iter().find(|d| d.name == dim);
        match range {
            Some(r) if u64::from(n) <= r.max => Ok(()),
            _ => Err(Error::Gpu(format!(
                "the kernel counting '{dim}' gave {n}, outside its range"
            ))),
        }
    }

    /// Records `steps` (with their workgroup counts) into one compute
    /// pass, then whatever `after` adds, and submits it.
    fn submit(
        &self,
        steps: &[Step],
        counts: &[[u32; 3]],
        after: impl FnOnce(&mut wgpu::CommandEncoder),
    ) -> Result<()> {
        let device = &self.gpu.device;
        self.gpu.scoped("running the model", || {
            let mut encoder =
                device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
                for (step, &[x, y, z]) in steps.iter().zip(counts) {
                    // A dynamic size of 0 leaves a kernel nothing to do.
                    if x * y * z == 0 {
                        continue;
                    }
                    pass.set_pipeline(&self.pipelines[step.pipeline]);
                    pass.set_bind_group(0, &step.group, &[]);
                    pass.dispatch_workgroups(x, y, z);
                }
            }
            after(&mut encoder);
            self.gpu.queue.submit([encoder.finish()]);
        })
    }

    /// Copies each output, at its shape in `shapes`, to its mappable buffer.
    fn copy_outputs(&self, encoder: &mut wgpu::CommandEncoder, shapes: &[Vec<usize>]) {
        for ((_, dev, staging), shape) in self.outputs.iter().zip(shapes) {
            let bytes = shape.iter().product::<usize>() as u64 * 4;
            if bytes > 0 {
                encoder.copy_buffer_to_buffer(&self.buffers[dev.buffer], 0, staging, 0, bytes);
            }
        }
    }

    /// Waits for the submitted work.
    fn wait(&self) -> Result<()> {
        self.gpu
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(e.to_string()))?;
        Ok(())
    }

    /// The first `bytes` of mappable buffer `buffer` as `u32`s.
    fn read_words(&self, buffer: &wgpu::Buffer, bytes: u64, what: &str) -> Result<Vec<u32>> {
        let slice = buffer.slice(0..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|e| Error::Gpu(e.to_string()))?
            .map_err(|e| Error::Gpu(format!("reading {what}: {e}")))?;
        let view = slice
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("reading {what}: {e}")))?;
        let words = view
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        drop(view);
        buffer.unmap();
        Ok(words)
    }

    fn read_outputs(&self) -> Result<Vec<Tensor>> {
        let AtSizes { output_shapes, .. } = self.current()?;
        let mut out = Vec::with_capacity(self.outputs.len());
        for ((info, dev, staging), shape) in self.outputs.iter().zip(output_shapes) {
            let bytes = shape.iter().product::<usize>() as u64 * 4;
            let words: Vec<u32> = if bytes == 0 {
                Vec::new()
            } else {
                self.read_words(staging, bytes, &format!("output '{}'", info.name))?
            };
            out.push(from_words(&words, word_of(dev)?, info.dtype()?, shape));
        }
        Ok(out)
    }
}
