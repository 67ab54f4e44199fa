"""The engine: loads one pipeline and turns requests into images, reporting events.

It knows nothing about Textual. The CLI, the app's worker thread and the benchmarks
all drive it the same way: ``load()`` once, ``generate()`` per job, ``cancel()`` from
any thread.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from tui.engine import device as devices
from tui.engine.adapters import Networks, PreparedPrompts
from tui.engine.cancel import CancelScope
from tui.engine.catalog import family_on_disk
from tui.engine.events import (Cancelled, DownloadProgress, Event, Failed, Finished, Loaded, LoadStarted,
                               Notice, Started, Unloaded)
from tui.engine.families import TRUE_CFG, ModelFamily, family_from_configs, needs_vae_upcast
from tui.engine.memory import MemorySample, format_bytes, release_device_memory, sample_memory, total_ram
from tui.engine.img2img import InitImageError, hires_size, load_init_image, steps_run
from tui.engine.models import (Loader, ModelLoadError, ModelSource, fetch_from_hub, first_line,
                               local_variant, pipeline_loader, require_hub, resolve_source)
from tui.engine.networks import NetworkError
from tui.engine.options import EngineOptions
from tui.engine.preview import LatentPreviewer, PreviewThrottle
from tui.engine.prompt_cache import PromptCache, memoise_encode_prompt
from tui.engine.request import GenerationRequest
from tui.engine.schedulers import build_scheduler, find_scheduler
from tui.engine.single_files import TRANSFORMER, single_file_loader
from tui.engine.step_callback import CancelRequested, StepCallback
from tui.engine.text_encoders import TextEncoders
from tui.engine.weights import module_bytes, own_aligned_memory, pipeline_modules

log = logging.getLogger("tui.engine")
OnEvent = Callable[[Event], None]


def _ignore(_event: Event) -> None:
    pass


class _ListenerError(Exception):
    """An exception raised by the caller's event handler (saving an image, say): it is the
    caller's to handle, so it passes through the engine instead of becoming a Failed event."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


def _guarded(on_event: OnEvent) -> OnEvent:
    def emit(event: Event) -> None:
        try:
            on_event(event)
        except Exception as error:
            raise _ListenerError(error) from error

    return emit


class Engine:
    def __init__(self, options: EngineOptions | None = None):
        self.options = options or EngineOptions()
        self.pipe = None
        self.model_label = ""
        self.family = ""
        self.family_info: ModelFamily | None = None
        self.device = ""
        self.dtype = ""
        self.load_seconds = 0.0
        self.decisions: list[devices.Decision] = []
        self.quantization = ""  # "NF4" (bitsandbytes), a GGUF transformer's ("Q8_0"); "" for the run's dtype
        self._facts: dict[str, devices.DtypeFacts] = {}
        self._cancels = CancelScope()
        self._base_scheduler_config: dict[str, Any] = {}
        self._schedulers: dict[str, Any] = {}
        self._scheduler_name = ""
        self._denoised = None
        self._pass_size = (512, 512)  # the pass being denoised, in pixels
        self._previewer: LatentPreviewer | None = None
        self._slicing: bool | None = None
        self._tiling: bool | None = None  # the VAE tiling decision the log last gave
        self._loaded_key: tuple | None = None
        self._loaded_options: EngineOptions | None = None
        self._loaded_event: Loaded | None = None
        self.machine: dict[str, str] = {}  # torch, OS and chip, recorded with every image
        # Models whose VAE gave NaN (black) images in float16: they decode in float32 from then on.
        self._float32_vae: set[tuple] = set()
        self._owner_thread: int | None = None  # the thread that loaded the model, where mps work stays
        self._networks = Networks()  # the LoRAs and embeddings loaded into the pipeline
        self._img2img = None  # the loaded pipeline's image-to-image sibling, made when first needed
        self._edit = None  # ... and its edit-by-instruction one
        self._estimate = None  # the loaded model's memory estimate, judged again per job size
        self._sizes_judged: set[tuple[int, int]] = set()
        self._prompts = PromptCache()  # the loaded model's prompt embeddings, for re-rolls
        self._encoder_state: tuple = ()  # the LoRAs and embeddings in the text encoders the cache was made under
        self._encoders: TextEncoders | None = None
        self._weight_bytes = 0  # every weight of the loaded pipeline, measured after loading
        self._part_bytes: dict[str, int] = {}  # ... by component
        self._residency: devices.Decision | None = None  # the text encoder decision the log last gave
        self._free_encoders = devices.KEEP  # how the text encoders leave at the next denoising step
        self._said_encoders_stay = False

    # --- loading ------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self.pipe is not None

    @property
    def loaded_model(self) -> str | None:
        """The model setting (as given: "demo", a Hub id, a path) of the loaded pipeline."""
        return self._loaded_options.model if self.pipe is not None and self._loaded_options else None

    @contextmanager
    def _operation(self, cancel: threading.Event | None):
        """The block's cancel token (``CancelScope.operation``), once the thread may use the device.
        A load inside a job is given the job's token, so one cancel stops both."""
        if devices.wrong_thread(self.device if self.pipe is not None else "", self._owner_thread,
                                threading.get_ident()):
            raise devices.DeviceError(devices.MPS_ONE_THREAD)
        with self._cancels.operation(cancel) as token:
            yield token

    def load(self, on_event: OnEvent = _ignore, cancel: threading.Event | None = None,
             quiet_if_loaded: bool = False) -> None:
        """Load the configured model; raises ModelLoadError or DeviceError with a one-line message.
        Setting ``cancel`` (or calling ``cancel()``) stops a download in progress. ``quiet_if_loaded``:
        a job checking its model says nothing when that model is the loaded one."""
        with self._operation(cancel) as token:
            self._load(on_event, token, quiet_if_loaded)

    def _load(self, on_event: OnEvent, cancel: threading.Event, quiet_if_loaded: bool = False) -> None:
        devices.enable_mps_fallback()
        from tui.engine.quiet import quiet_libraries

        quiet_libraries()
        import torch

        options = self.options
        source = resolve_source(options.model)  # a name that cannot be a model keeps the loaded one
        device = devices.choose_device(options.device, torch.backends.mps.is_available(), torch.cuda.is_available())
        facts = self._dtype_facts(device.value)
        family = family_on_disk(source.ref)
        dtype = devices.choose_dtype(options.dtype, device.value, family and family.family, facts)
        quantize = self._quantize(options.quantize, device.value)  # one that cannot run keeps the loaded model
        key = (source.kind, source.ref, device.value, dtype.value, options.quantize)
        if self.pipe is not None and key == self._loaded_key and self._loaded_event is not None:
            if not quiet_if_loaded:
                log.info("%s is already loaded on %s (%s); nothing to load", self.model_label, self.device, self.dtype)
                on_event(self._loaded_event)
            return
        log.info("loading %s (%s)", source.label, source.kind)
        on_event(LoadStarted(source.label, source.kind))
        started = time.perf_counter()
        # Downloads and checks come before the loaded model is unloaded: a model that cannot load
        # (a Hub id while offline, a truncated file) leaves the working one in place.
        build = self._loader(source, on_event, cancel, dtype.value, device.value)
        if family is None and source.kind in ("hub", "hub_file"):  # downloaded just now: its family can be read
            family = family_on_disk(source.ref)
            dtype = devices.choose_dtype(options.dtype, device.value, family and family.family, facts)
            key = (source.kind, source.ref, device.value, dtype.value, options.quantize)
        self._estimate = self._judge_memory(source, device.value, dtype.value, on_event)
        self._sizes_judged = set()
        previous = self._loaded_options if self.pipe is not None else None
        self.unload(on_event)
        try:
            pipe = build(getattr(torch, dtype.value)).to(device.value)
        except BaseException:
            if previous is not None:
                self._load_again(previous, on_event)
            raise
        if device.value == "cpu":
            own_aligned_memory(pipeline_modules(pipe).values())
        pipe.set_progress_bar_config(disable=True)

        self.pipe = pipe
        self.device = device.value
        self.family_info = _family(pipe, source.label)
        slicing = self._apply_attention_slicing()
        self.model_label = source.label
        self.dtype = dtype.value
        self.family = self.family_info.label + (" (demo)" if source.kind == "demo" else "")
        self._previewer = LatentPreviewer(self.family_info.latent_format)
        upcast = self._apply_vae_upcast()
        self._base_scheduler_config = dict(pipe.scheduler.config)
        self._schedulers = {}
        self._scheduler_name = ""
        warmup = devices.choose_warmup(options.warmup, device.value, torch.__version__)
        if warmup.value and not self._edits_only():  # an editing pipeline cannot run without an image
            pipe(prompt="warm-up", num_inference_steps=1, **self._size(256, 256), output_type="latent")
        quantized = self._apply_quantized_fixes(dtype.value)
        self._watch_text_encoders(build)
        residency = self._apply_text_encoder_residency(sample_memory(device.value))
        self.decisions = ([device, dtype, slicing, warmup] + ([upcast] if upcast else [])
                          + ([quantize] if quantize.value != "none" else []) + quantized + [residency])
        for decision in self.decisions:
            log.info(decision.describe())
        self.machine = devices.machine_facts(device.value)
        self._owner_thread = threading.get_ident()
        slow_torch = devices.mps_torch_warning(device.value, torch.__version__, self.family_info.base)
        if slow_torch:
            log.warning(slow_torch)
            on_event(Notice(slow_torch, "warning"))
        self.load_seconds = time.perf_counter() - started
        log.info("loaded %s (%s) on %s in %.1f s", self.model_label, self.family, self.device, self.load_seconds)
        self._loaded_key, self._loaded_options = key, replace(options)
        self._loaded_event = Loaded(self.model_label, self.family, self.device, self.dtype, self.load_seconds,
                                    tuple(d.describe() for d in self.decisions), self.family_info,
                                    replace(sample_memory(self.device), held=self._held_parts()), options.model)
        on_event(self._loaded_event)

    def _apply_quantized_fixes(self, dtype: str) -> list[devices.Decision]:
        """Set ``quantization`` from what the pipeline holds (an SDNQ repository's components, else those
        bitsandbytes loaded in NF4, else a GGUF transformer's type, from its estimate); its decisions, and the fix
        quantized GGUF weights may need."""
        from tui.engine import sdnq
        from tui.engine.nf4 import NF4, held_decision, quantized_components
        from tui.engine.quantized import choose_compute_dtype_reads, quantization_decision, report_compute_dtype

        nf4 = quantized_components(self.pipe)
        by_sdnq = sdnq.loaded_quantization(self.pipe)
        if by_sdnq:  # a repository stored quantized; NF4 never takes the parts SDNQ holds
            held = sdnq.held_decision(by_sdnq, dtype)
            self.quantization = held.value
            return [held] + ([held_decision(nf4, dtype)] if nf4 else [])
        gguf = self._estimate.quantization if self._estimate and self._estimate.quantization != NF4 else ""
        self.quantization = NF4 if nf4 else gguf
        if not self.quantization:
            return []
        reads = choose_compute_dtype_reads(self.device, self.family_info.base)
        if reads.value:
            report_compute_dtype(self.pipe.transformer)
        held = held_decision(nf4, dtype) if nf4 else quantization_decision(self.quantization, dtype)
        return [held, reads]

    def _quantize(self, setting: str, device: str) -> devices.Decision:
        """The quantize setting's decision: DeviceError where NF4 cannot run here; the machine's facts are read
        (bitsandbytes imported) only when it is asked for."""
        from tui.engine.nf4 import QuantizeFacts, choose_quantization, quantize_facts

        return choose_quantization(setting, device, quantize_facts() if setting != "none" else QuantizeFacts(None))

    def _dtype_facts(self, device: str) -> devices.DtypeFacts:
        """The machine's facts for the dtype choice, read once per device (the chip takes a sysctl call)."""
        if device not in self._facts:
            self._facts[device] = devices.dtype_facts(device)
        return self._facts[device]

    def _loader(self, source: ModelSource, on_event: OnEvent, cancel: threading.Event, dtype: str,
                device: str) -> Loader:
        """What builds the pipeline at a torch dtype, once the model is on disk and checked."""
        options = self.options
        quantize = options.quantize
        if source.kind == "demo":
            from tui.engine.demo import build_demo_pipeline

            if quantize != "none":
                log.info("quantize: %s does not apply to the demo model, built in memory", quantize)

            def demo(torch_dtype):
                pipe = build_demo_pipeline()
                return pipe if torch_dtype == pipe.dtype else pipe.to(dtype=torch_dtype)

            return Loader(demo)
        prefer_fp16 = dtype == "float16"  # half the download and the memory, where the repository has fp16
        if source.kind == "file":
            return single_file_loader(Path(source.ref), options.allow_pickle, prefer_fp16, quantize, device)
        if source.kind == "hub":
            local = fetch_from_hub(source.ref, options.allow_pickle, _progress(source.label, on_event), cancel.is_set,
                                   prefer_fp16)
            return pipeline_loader(local.folder, options.allow_pickle, local.variant, quantize)
        if source.kind == "hub_file":
            return self._hub_file_loader(source, on_event, cancel, prefer_fp16, quantize, device)
        folder = Path(source.ref)
        variant = local_variant(folder, options.allow_pickle, prefer_fp16) if (folder / "model_index.json").is_file() \
            else None
        return pipeline_loader(folder, options.allow_pickle, variant or None, quantize)

    def _hub_file_loader(self, source: ModelSource, on_event: OnEvent, cancel: threading.Event, prefer_fp16: bool,
                         quantize: str, device: str):
        """One file of a Hub repository, downloaded unless cached; a transformer alone also downloads its
        family's base repository without the transformer's weights, unless one is cached."""
        from tui.engine.hub_files import fetch_hub_file

        allow_pickle = self.options.allow_pickle
        path = fetch_hub_file(source.ref, _progress(source.label, on_event), cancel.is_set)

        def fetch_base(repo_id: str) -> None:
            try:
                require_hub(repo_id, repo_id)
            except ModelLoadError:
                return  # the loader then says which repository is missing and how to fetch it
            log.info("%s loads with the text encoders, VAE and configs of %s, which the cache does not hold: "
                     "downloading them (not its transformer weights)", source.label, repo_id)
            fetch_from_hub(repo_id, allow_pickle, _progress(repo_id, on_event), cancel.is_set, prefer_fp16,
                           without_weights_of=(TRANSFORMER,))

        return single_file_loader(path, allow_pickle, prefer_fp16, quantize, device, fetch_base)

    def _judge_memory(self, source: ModelSource, device: str, dtype: str, on_event: OnEvent):
        """Say, before it loads, what the model will need against what the device may use, and what
        would fit instead where it will not; nothing is refused. Returns the estimate (None where its
        files say nothing: the demo model, a Hub id not on disk)."""
        from tui.engine.catalog import describe

        if source.kind == "demo":
            return None
        estimate = describe(source.ref).estimate(dtype, quantize=self.options.quantize)
        if estimate is not None:
            self._say_fit(source.label, estimate, device, self._resident_bytes(), on_event)
        return estimate

    def _say_fit(self, label: str, estimate, device: str, held: int, on_event: OnEvent,
                 only_if_over: bool = False) -> None:
        """The memory line for ``estimate`` (a warning with what would fit where it will not); with
        ``only_if_over``, nothing where it fits."""
        from tui.engine.fit import budget_from_sample, memory_line

        budget = budget_from_sample(device, sample_memory(device), held)
        line, over = memory_line(label, estimate, budget, lambda: self._alternatives(estimate, device))
        if over:
            log.warning(line)
            on_event(Notice(line, "warning"))
        elif not only_if_over:
            log.info(line)

    def _alternatives(self, estimate, device: str) -> tuple[tuple[str, int], ...]:
        """What the log offers instead of a model that would swap, the largest that fits first: the family's
        known quantized files and smaller variants, and NF4 on a GPU where the model is not quantized."""
        from tui.engine.getable import smaller_of_the_family

        dtype = "bfloat16" if estimate.dtype_bytes == 2 else "float32"
        ways = []
        model = family_on_disk(self.options.model)
        if model is not None:
            ways += smaller_of_the_family(model.base, dtype, estimate.size)
        if device != "cpu" and self.options.quantize == "none" and not estimate.quantization:
            from tui.engine.estimate import quantized_on_load

            nf4 = replace(estimate, parts=quantized_on_load(estimate.parts, "nf4-encoders"))
            ways.append(("with --quantize nf4-encoders (bitsandbytes)", nf4.peak))
        return tuple(sorted(ways, key=lambda way: -way[1]))

    def _judge_job_size(self, size: tuple[int, int], on_event: OnEvent) -> None:
        """A job at another size than the load was judged at: said when it will not fit, once per size."""
        if self._estimate is None or size == self._estimate.size or size in self._sizes_judged:
            return
        self._sizes_judged.add(size)
        self._say_fit(f"a {size[0]}x{size[1]} job of {self.model_label}", self._estimate.at_size(size), self.device,
                      self._resident_bytes(), on_event, only_if_over=True)

    def _resident_bytes(self) -> int:
        """What the loaded pipeline's weights hold on its device (given back before another loads), from
        the sizes measured at load: text encoders freed from the device are not counted."""
        return sum(self._held_parts().values()) if self.pipe is not None else 0

    def _load_again(self, previous: EngineOptions, on_event: OnEvent) -> None:
        """After a failed load, load the model that was loaded before, so a failure never leaves
        the app without the model it was working with."""
        failed = self.options
        log.warning("loading %s failed; loading %s again", failed.model, previous.model)
        self.options = previous
        try:
            self._load(on_event, threading.Event())
        except Exception as error:  # the original failure is the one to report
            log.error("loading %s again failed too: %s", previous.model, first_line(error))

    def _apply_vae_upcast(self) -> devices.Decision | None:
        vae = getattr(self.pipe, "vae", None)
        if vae is None or not hasattr(vae, "register_to_config"):
            return None
        configured = vae.config.get("force_upcast")
        upcast = needs_vae_upcast(self.family_info, self.dtype, configured)
        if upcast and not configured:
            vae.register_to_config(force_upcast=True)
        if not self.family_info.family.vae_float16_overflow or self.dtype != "float16":
            return None
        label = self.family_info.family.label
        reason = (f"{label}'s VAE overflows in float16 (black images), so it decodes in float32" if upcast
                  else "this VAE is marked float16-safe, so it decodes in float16")
        return devices.Decision("vae upcast", upcast, reason)

    @property
    def attention_slicing_active(self) -> bool:
        return bool(self._slicing)

    def _apply_attention_slicing(self) -> devices.Decision:
        """Apply the attention slicing setting; cheap, so it can change between jobs without a reload."""
        decision = devices.choose_attention_slicing(self.options.attention_slicing, self.device, total_ram(),
                                                    self.family_info.base if self.family_info else "")
        if decision.value != self._slicing:
            if decision.value:
                self.pipe.enable_attention_slicing()
            else:
                self.pipe.disable_attention_slicing()
            if self._slicing is not None:
                log.info(decision.describe())
            self._slicing = decision.value
        return decision

    def _apply_vae_tiling(self, size: tuple[int, int], memory: MemorySample) -> devices.Decision | None:
        """Decode this job's image in tiles or whole: it depends on the size, so it is decided per job."""
        vae = getattr(self.pipe, "vae", None)
        if vae is None or not hasattr(vae, "enable_tiling"):
            return None
        import torch

        decision = devices.choose_vae_tiling(self.options.vae_tiling, self.device,
                                             memory.device_limit or memory.system_total, *size,
                                             torch.finfo(vae.dtype).bits // 8)
        if decision.value != getattr(vae, "use_tiling", None):
            vae.enable_tiling() if decision.value else vae.disable_tiling()
        if decision.value != self._tiling:  # said for the first job of a model, then when it changes
            log.info(decision.describe())
            self._tiling = decision.value
        return decision

    def _pipelines(self) -> list:
        """The loaded pipeline and its siblings made with from_pipe, which share its components."""
        return [p for p in (self.pipe, self._img2img, self._edit) if p is not None]

    def _watch_text_encoders(self, loader: Loader) -> None:
        """Measure the weights, answer re-rolls from the prompt cache, and free the text encoders
        (when decided) as the first denoising step starts, once every encoding of the call is done."""
        import torch

        pipe = self.pipe
        modules = pipeline_modules(pipe)
        self._part_bytes = {name: module_bytes(m) for name, m in modules.items()}
        self._weight_bytes = sum(self._part_bytes.values())
        names = list(dict.fromkeys(e.component for e in self.family_info.family.encoders if e.component in modules))
        self._encoders = TextEncoders(self._pipelines, names, self.device, self.dtype, loader.parts,
                                      loader.use_safetensors)
        memoise_encode_prompt(pipe, self._prompts, self._encoders.bring_back)
        denoiser = modules.get("transformer", modules.get("unet"))
        if isinstance(denoiser, torch.nn.Module):
            engine = weakref.ref(self)

            def denoising_starts(_module, _args) -> None:  # a function: copying the module copies no engine
                if engine() is not None:
                    engine()._denoising_starts()

            denoiser.register_forward_pre_hook(denoising_starts)

    def _apply_text_encoder_residency(self, memory: MemorySample,
                                      size: tuple[int, int] | None = None) -> devices.Decision:
        """Where the text encoders wait while this job denoises; decided per job, as the setting, the size
        and the memory free may change between jobs. auto frees them where the model does not fit what
        the device may use comfortably (fit.py: a Mac's recommended working set), the picker's "fits"."""
        from tui.engine.estimate import working_bytes
        from tui.engine.fit import budget_from_sample

        model = self.family_info
        width, height = size or (model.native_size, model.native_size)
        working = working_bytes(model.family.job_memory_gb, model.native_size, width, height)
        budget = budget_from_sample(self.device, memory, self._weight_bytes)
        decision = devices.choose_text_encoder_residency(
            self.options.text_encoders, self.device, self._weight_bytes, self._encoders.bytes, working,
            budget.comfortable if budget else None, self._encoders.reloadable)
        if self._residency is not None and decision != self._residency:
            log.info(decision.describe())
        self._residency = decision
        return decision

    def _held_parts(self) -> dict[str, int]:
        """What the loaded model holds on its device by part, for the memory line: the denoiser, the text
        encoders (0 while they are freed) and the VAE, from the sizes measured at load."""
        held: dict[str, int] = {}
        encoders = self._encoders.names if self._encoders else ()
        for name, count in self._part_bytes.items():
            label = "text encoders" if name in encoders else "VAE" if name == "vae" else name
            resident = name not in encoders or self._encoders.resident
            held[label] = held.get(label, 0) + (count if resident else 0)
        order = {"transformer": 0, "unet": 0, "text encoders": 1, "VAE": 2}
        return dict(sorted(held.items(), key=lambda item: order.get(item[0], 3)))

    def _denoising_starts(self) -> None:
        """At the denoiser's first forward of a pipeline call: the prompts are encoded by now, so the
        text encoders leave if this job decided so, before the first step's working memory is taken."""
        how, self._free_encoders = self._free_encoders, devices.KEEP
        if how == devices.KEEP or not self._encoders.resident:
            return
        if self._networks.in_text_encoders(self.pipe):  # freeing would lose them: they stay while loaded
            if not self._said_encoders_stay:
                log.info("text encoders stay: a LoRA or embedding is loaded into them")
                self._said_encoders_stay = True
            return
        self._encoders.free(how)

    def unload(self, on_event: OnEvent = _ignore) -> None:
        """Drop the pipeline and hand its memory back before anything else is loaded."""
        if self.pipe is None:
            return
        label = self.model_label
        before = sample_memory(self.device)
        self.pipe = None
        self._loaded_key = self._loaded_options = self._loaded_event = None
        self._schedulers = {}
        self._scheduler_name = ""
        self._base_scheduler_config = {}
        self._previewer = None
        self._denoised = None
        self._slicing = self._tiling = None
        self._networks.reset()
        self._img2img = None
        self._edit = None
        self._prompts.clear()
        self._encoder_state = ()
        self._encoders = None
        self._residency = None
        self._free_encoders = devices.KEEP
        self._said_encoders_stay = False
        release_device_memory(self.device)
        memory = sample_memory(self.device)
        freed = _freed(before, memory)
        log.info("unloaded %s; %s freed; memory now: %s on the device, %s process RSS", label, format_bytes(freed),
                 format_bytes(memory.device_allocated), format_bytes(memory.process_rss))
        on_event(Unloaded(label, memory, freed))

    # --- generation ---------------------------------------------------------------------

    def cancel(self) -> bool:
        """Stop the load or job running now (a job at the end of its current step). Thread-safe.
        With nothing running it does nothing and returns False: it can never stop a later job."""
        return self._cancels.cancel()

    def generate(self, request: GenerationRequest, on_event: OnEvent = _ignore,
                 cancel: threading.Event | None = None) -> list[Finished]:
        """Run ``request``; returns the finished images. Never raises for runtime failures:
        they arrive as a Failed event and the engine stays usable. An exception raised by
        ``on_event`` itself (saving an image, say) propagates to the caller unchanged.

        ``cancel`` is this job's own token: the caller may set it before the job starts (it then
        stops at its first step) or while it runs; ``cancel()`` sets it too while the job runs."""
        called = time.perf_counter()
        with self._operation(cancel) as token:
            try:
                return self._generate(request.with_seed(), _guarded(on_event), called, token)
            except _ListenerError as error:
                raise error.error from None

    def _generate(self, request: GenerationRequest, on_event: OnEvent, called: float,
                  cancel: threading.Event) -> list[Finished]:
        results: list[Finished] = []
        try:
            if not self.loaded:
                self.load(on_event, cancel)
            self._use_scheduler(request.scheduler, request.shift)
            self._apply_attention_slicing()
            memory = sample_memory(self.device)
            self._apply_vae_tiling(request.output_size, memory)
            self._judge_job_size(request.output_size, on_event)
            self._apply_text_encoder_residency(memory, request.output_size)
            self._prompts.begin_job()
            prepared = self._networks.prepare(self.pipe, self.family_info.family, self.options.models_dir,
                                              request.prompt, request.negative_prompt, self.options.allow_pickle,
                                              self._encoders.bring_back)
            if self._networks.encoder_state != self._encoder_state:  # embeddings made under other ones
                self._prompts.clear()
                self._encoder_state = self._networks.encoder_state
            for name, steps in prepared.made_for_steps.items():
                if steps != request.steps:
                    log.info("LoRA %s is made for %d steps (its name or metadata says so); this job runs %d",
                             name, steps, request.steps)
            prompts = self._prompt_arguments(prepared)
            # Read once for the job, before it starts: a bad source fails it without a step run.
            source = load_init_image(request.init_image, (request.width, request.height)) \
                if request.init_image else None
            if self._edits_only() and not request.edit:
                raise InitImageError(f"{self.family_info.label} models only edit a picture by instruction: give the "
                                     "picture as the init image of an edit")
            on_event(Started(request, request.count, total_steps_of(request)))
            batch = devices.choose_batch_size(self.device, request.count).value
            swap_start = sample_memory(self.device).swap_used
            for first in range(0, request.count, batch):
                indices = list(range(first, min(first + batch, request.count)))
                results += self._run_batch(request, prompts, prepared, source, indices, called, swap_start,
                                           on_event, cancel)
            if self._prompts.all_reused:
                log.info("prompt embeddings reused: the text encoders did not run")
        except _ListenerError:
            raise
        except CancelRequested:
            log.info("cancelled after %d of %d images", len(results), request.count)
            on_event(Cancelled(request, len(results)))
        except (ModelLoadError, devices.DeviceError, NetworkError, InitImageError) as error:
            log.error(str(error))
            on_event(Failed(request, str(error), completed=len(results)))
        except Exception as error:  # the engine must survive any pipeline failure
            oom = devices.is_out_of_memory(error)
            release_device_memory(self.device)
            if oom:
                message = (f"out of memory on {self.device} at {request.width}x{request.height}; "
                           "turn attention slicing on, use a smaller size or fewer images at once")
                log.error(message)
            else:
                message = f"generation failed: {type(error).__name__}: {first_line(error, '')}".rstrip(": ")
                log.exception("generation failed")
            on_event(Failed(request, message, out_of_memory=oom, completed=len(results)))
        finally:
            if devices.has_device_cache(self.device):  # the job's buffers, handed back between jobs
                release_device_memory(self.device, collect=False)
        return results

    def _use_scheduler(self, name: str, shift: float = 0.0) -> None:
        spec = find_scheduler(name)
        if spec is None:
            raise ValueError(f"scheduler: unknown {name!r}")
        family = self.family_info.family
        if spec.name not in family.samplers:
            raise ValueError(f"scheduler: {spec.name} does not work with {family.label} models; use one of "
                             f"{', '.join(family.samplers)}")
        if shift and not spec.flow:
            log.info("shift: %g is for flow-matching samplers; %s does not use it", shift, spec.name)
            shift = 0.0
        key = f"{spec.name} shift {shift:g}" if shift else spec.name
        if key == self._scheduler_name:
            return
        if key not in self._schedulers:
            config = self._scheduler_config(shift)
            if family.passes_mu and not spec.fixed_shift_with_mu and not config.get("use_dynamic_shifting"):
                raise ValueError(f"scheduler: {spec.name} takes only a shift by image size on {family.label} models "
                                 "(the model's own, at shift 0); use another sampler for a fixed shift")
            self._schedulers[key] = self._tap(build_scheduler(spec, config))
        self.pipe.scheduler = self._schedulers[key]
        self._scheduler_name = key

    def _scheduler_config(self, shift: float) -> dict[str, Any]:
        """The model's scheduler config; a fixed ``shift`` replaces its own schedule, including FLUX's shift by
        image size (use_dynamic_shifting; FlowMatchEulerDiscreteScheduler's config)."""
        if not shift:
            return self._base_scheduler_config
        return {**self._base_scheduler_config, "shift": shift, "use_dynamic_shifting": False}

    def _tap(self, scheduler):
        """Wrap ``scheduler.step`` to keep the denoised estimate (x0) for previews.

        Pipelines discard it (they take ``step(...)[0]``); schedulers that compute it
        return it as ``pred_original_sample``, and the multistep solvers that predict
        x0 keep it as their latest model output.
        """
        original = scheduler.step
        predicts_x0 = (str(scheduler.config.get("algorithm_type", "")).endswith("dpmsolver++")
                       or bool(scheduler.config.get("predict_x0", False)))

        def step(*args, return_dict: bool = True, **kwargs):
            output = original(*args, return_dict=True, **kwargs)
            denoised = getattr(output, "pred_original_sample", None)
            if denoised is None and predicts_x0 and getattr(scheduler, "model_outputs", None):
                denoised = scheduler.model_outputs[-1]
            self._denoised = denoised
            return output if return_dict else output.to_tuple()

        scheduler.step = step
        return scheduler

    def _prompt_arguments(self, prepared: PreparedPrompts) -> dict[str, Any]:
        from tui.engine.conditioning import prompt_arguments

        family = self.family_info.family
        # The same tensors on a re-roll (not copies), so encode_prompt's cache, which keys them by identity, hits.
        arguments = self._prompts.get(("a1111", prepared.prompt, prepared.negative), lambda: prompt_arguments(
            self.pipe, family, prepared.prompt, prepared.negative, self._encoders.bring_back), copy=False)
        for note in arguments.notes:
            log.info(note)
        return arguments.kwargs

    def _run_batch(self, request: GenerationRequest, prompts: dict[str, Any], prepared: PreparedPrompts, source,
                   indices: list[int], called: float, swap_start: int, on_event: OnEvent,
                   cancel: threading.Event) -> list[Finished]:
        import torch

        opts = self.options
        seeds = [request.seed_for(i) for i in indices]
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        callback = StepCallback(device=self.device, image_index=indices[0], total_steps=total_steps_of(request),
                                called=called, swap_start=swap_start, cancel=cancel, on_event=on_event,
                                preview=self._preview if opts.previews else None,
                                throttle=PreviewThrottle(opts.preview_interval, opts.preview_max_fps),
                                held=self._held_parts)
        arguments = {**prompts, "num_inference_steps": request.steps, **self._guidance(request.guidance, prompts),
                     "num_images_per_prompt": len(indices),
                     "generator": generators if len(generators) > 1 else generators[0],
                     "callback_on_step_end": callback, "callback_on_step_end_tensor_inputs": callback.tensor_inputs}

        def denoise(pipe, inputs: dict[str, Any], steps: int, size: tuple[int, int], last: bool = True) -> list:
            self._pass_size = size  # previews unpack packed latents to this shape
            # The text encoders leave as the job's last pass starts: a hires fix's second pass may encode again.
            self._free_encoders = self._residency.value if last else devices.KEEP
            return self._denoise(pipe, {**arguments, **inputs}, steps, callback, on_event)

        def refine(image) -> list:  # image to image, from the init image or the upscaled first pass
            size = (image[0] if isinstance(image, list) else image).size
            pipe = self._image_to_image()
            return denoise(pipe, {"image": image, "strength": request.strength, **_size_arguments(pipe, size)},
                           steps_run(request.steps, request.strength), size)

        if source is not None and request.edit:  # the prompt is an instruction for the picture, kept whole
            images = denoise(self._edit_pipeline(), {"image": source, **self._size(request.width, request.height)},
                             request.steps, source.size)
        elif source is not None:
            images = refine(source)
        else:
            images = denoise(self.pipe, self._size(request.width, request.height), request.steps,
                             (request.width, request.height), last=not request.hires)
            if request.hires:  # A1111's hires fix: the first pass upscaled, then denoised again lightly
                from PIL import Image

                size = hires_size(request.width, request.height, request.hires)
                images = refine([image.resize(size, Image.LANCZOS) for image in images])
        timings = callback.timings(self.load_seconds)
        results = []
        for image, index, seed in zip(images, indices, seeds):
            finished = Finished(image, index, seed, request, timings, {**self.describe(), **prepared.metadata()})
            log.debug("image %d/%d seed %d in %.2f s (%.2f it/s)", index + 1, request.count, seed, timings.total_s,
                      timings.it_per_s)
            on_event(finished)
            results.append(finished)
        return results

    def _denoise(self, pipe, arguments: dict[str, Any], steps: int, callback: StepCallback,
                 on_event: OnEvent) -> list:
        """One pass of ``pipe`` over a batch, of ``steps`` steps; its images, decoded."""
        callback.begin_pass(steps)
        self._denoised = None
        float32_vae = self._loaded_key in self._float32_vae
        output = pipe(**arguments, **({"output_type": "latent"} if float32_vae else {}))
        self._denoised = None
        callback.end_pass()
        return self._decode_in_float32(output.images) if float32_vae else \
            self._checked(output.images, callback.final_latents, on_event)

    def _preview(self, latents):
        """A step's preview: of the scheduler's denoised estimate where it gives one, else of the latents."""
        return self._previewer.to_image(self._denoised if self._denoised is not None else latents, *self._pass_size)

    def _guidance(self, value: float, prompts: dict[str, Any]) -> dict[str, Any]:
        """The request's guidance under the name the family's pipeline reads it by. True CFG
        (Qwen-Image's true_cfg_scale) runs only when a negative prompt is given: with guidance on
        and none given, the negative prompt is " ", as Qwen-Image's pipeline docs say to pass. None
        for a model that takes none, such as FLUX.1 schnell."""
        guidance = self.family_info.guidance
        arguments = {guidance.argument: value} if guidance.argument else {}
        if (guidance.kind == TRUE_CFG and value > guidance.off_at and "negative_prompt" in prompts
                and not prompts["negative_prompt"]):
            arguments["negative_prompt"] = " "
        return arguments

    def _edits_only(self) -> bool:
        """Whether the loaded pipeline is its family's edit pipeline and that cannot run without a
        picture to edit (pipelines.edit_only: Qwen-Image-Edit's)."""
        family = self.family_info.family if self.family_info else None
        return (family is not None and family.pipelines.edit_only
                and family.pipelines.edit == type(self.pipe).__name__)

    def _edit_pipeline(self):
        """The family's edit-by-instruction pipeline: the loaded one when it is that (FLUX.1 Kontext,
        Qwen-Image-Edit), else made with ``from_pipe`` on the same components."""
        from tui.engine.families import FAMILIES

        family = self.family_info.family
        name = family.pipelines.edit
        if name is None:
            able = ", ".join(f.label for f in FAMILIES if f.pipelines.edit)
            raise InitImageError(f"edit: {family.label} models cannot edit a picture by instruction; load a model "
                                 f"that can ({able})")
        if type(self.pipe).__name__ == name:
            return self.pipe
        if self._edit is None:
            import diffusers

            self._edit = getattr(diffusers, name).from_pipe(self.pipe)
            self._edit.set_progress_bar_config(disable=True)
            memoise_encode_prompt(self._edit, self._prompts, self._encoders.bring_back)
            log.info("edit: %s on the loaded model's components", name)
        self._edit.scheduler = self.pipe.scheduler
        return self._edit

    def _size(self, width: int, height: int) -> dict[str, Any]:
        """A text-to-image or edit pass's size arguments; with the area, for pipelines that rescale
        their height and width to an area of their own otherwise (FLUX.1 Kontext's max_area)."""
        area = self.family_info.family.area_argument
        return {"width": width, "height": height, **({area: width * height} if area else {})}

    def _image_to_image(self):
        """The loaded pipeline's image-to-image sibling, the family's image-to-image pipeline on the
        same components (``from_pipe`` shares every module: no weights are copied), with the job's
        scheduler."""
        if self._img2img is None:
            import diffusers

            family = self.family_info.family
            if family.pipelines.image_to_image is None:
                raise InitImageError(f"init image: {family.label} models have no image-to-image pipeline here")
            self._img2img = getattr(diffusers, family.pipelines.image_to_image).from_pipe(self.pipe)
            self._img2img.set_progress_bar_config(disable=True)
            memoise_encode_prompt(self._img2img, self._prompts, self._encoders.bring_back)
            log.info("image-to-image: %s on the loaded model's components", type(self._img2img).__name__)
        self._img2img.scheduler = self.pipe.scheduler
        return self._img2img

    def _checked(self, images: list, final_latents, on_event: OnEvent) -> list:
        """The images, decoded again in float32 from ``final_latents`` if the float16 VAE gave NaN
        (all black); the model then decodes in float32 for every later job, as A1111 does after
        its NaN check."""
        import numpy as np

        if self.dtype != "float16" or final_latents is None or not images:
            return images  # only a float16 decode can overflow: no pixels are read otherwise
        brightest = max(int(np.asarray(image).max()) for image in images)
        if not devices.needs_float32_decode(self.dtype, brightest):
            return images
        message = ("the VAE gave a black (NaN) image in float16; decoded again in float32, and this model's "
                   "VAE stays in float32 from now on (as A1111's --no-half-vae)")
        log.warning(message)
        on_event(Notice(message, "warning"))
        self._float32_vae.add(self._loaded_key)
        return self._decode_in_float32(final_latents)

    def _decode_in_float32(self, latents) -> list:
        import torch

        vae = self.pipe.vae
        if vae.dtype != torch.float32:
            vae.to(torch.float32)
        config = vae.config
        if latents.ndim == 3:  # FLUX.1's packed 2x2 patches (its latent output), as the VAE reads them
            from tui.engine.preview import spatial

            latents = spatial(latents, *self._pass_size)
        latents = latents.to(device=vae.device, dtype=torch.float32)
        mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
        if mean is not None and std is not None:  # SDXL-style VAEs normalise their latents
            mean = torch.tensor(mean).view(1, -1, 1, 1).to(latents)
            std = torch.tensor(std).view(1, -1, 1, 1).to(latents)
            latents = latents * std / config.scaling_factor + mean
        else:
            latents = latents / config.scaling_factor
            if getattr(config, "shift_factor", None):  # FLUX.1's VAE (Z-Image's): z / scale + shift
                latents = latents + config.shift_factor
        with torch.no_grad():
            decoded = vae.decode(latents, return_dict=False)[0]
        return self.pipe.image_processor.postprocess(decoded, output_type="pil")

    def describe(self) -> dict[str, Any]:
        """What produced the images, for metadata and history."""
        kind = {"guidance_kind": self.family_info.guidance.kind} if self.family_info else {}
        quantized = {"quantization": self.quantization} if self.quantization else {}
        return {"model": self.model_label, "family": self.family, **kind, "device": self.device, "dtype": self.dtype,
                **quantized, **self.machine}


def _progress(name: str, on_event: OnEvent):
    """A download's progress callback, reporting as DownloadProgress events of ``name``."""
    return lambda done, total: on_event(DownloadProgress(name, done, total))


def total_steps_of(request: GenerationRequest) -> int:
    """The denoising steps a job's image takes: img2img runs a share of them; hires fix adds a pass."""
    if request.init_image and not request.edit:
        return steps_run(request.steps, request.strength)
    if request.hires:
        return request.steps + steps_run(request.steps, request.strength)
    return request.steps


def _size_arguments(pipe, size: tuple[int, int]) -> dict[str, int]:
    """The image's own size for image-to-image pipelines that take one: SD3's (FLUX.1's and
    Qwen-Image's too) resize the image to their default size, 1024 px, when not given it."""
    import inspect

    parameters = inspect.signature(pipe.__call__).parameters
    return {"width": size[0], "height": size[1]} if "width" in parameters and "height" in parameters else {}


def _family(pipe, label: str) -> ModelFamily:
    def config(component) -> dict:
        return dict(getattr(getattr(pipe, component, None), "config", None) or {})

    index = {"_class_name": type(pipe).__name__, **dict(pipe.config)}
    return family_from_configs(index, config("unet"), config("scheduler"), label, transformer=config("transformer"))


def _freed(before: MemorySample, after: MemorySample) -> int:
    """What an unload handed back: the device's allocated bytes on a GPU, the process's RSS on the CPU."""
    if before.device_allocated is not None and after.device_allocated is not None:
        return max(0, before.device_allocated - after.device_allocated)
    return max(0, before.process_rss - after.process_rss)
