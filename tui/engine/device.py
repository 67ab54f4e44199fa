"""Device, dtype and Apple Silicon decisions.

Every decision here is a pure function of facts (device, total RAM, torch version,
the user's setting), so each can be tested without a Mac; each returns its reason,
which the engine logs. The rules follow the diffusers guide for Apple Silicon (mps).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from tui.engine.families import FLUX, FLUX_KONTEXT, SDXL

DEVICES = ("auto", "mps", "cuda", "cpu")
DTYPES = ("auto", "float16", "bfloat16", "float32")
SWITCHES = ("auto", "on", "off")
GIB = 1024**3
SLICING_RAM_THRESHOLD = 64 * GIB


@dataclass(frozen=True)
class Decision:
    name: str
    value: object
    reason: str

    def describe(self) -> str:
        shown = {True: "on", False: "off"}.get(self.value, self.value) if isinstance(self.value, bool) else self.value
        return f"{self.name}: {shown} ({self.reason})"


class DeviceError(ValueError):
    pass


def parse_torch_version(version: str) -> tuple[int, int]:
    """(major, minor) from strings such as '2.13.0+cpu' or '2.1.0a0+git1234'."""
    parts = version.split("+")[0].split(".")
    try:
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
    except (IndexError, ValueError):
        return (0, 0)


def choose_device(setting: str, mps_available: bool, cuda_available: bool) -> Decision:
    if setting not in DEVICES:
        raise DeviceError(f"device: unknown {setting!r}; use one of {', '.join(DEVICES)}")
    if setting == "auto":
        if mps_available:
            return Decision("device", "mps", "auto: Apple Silicon GPU (mps) is available")
        if cuda_available:
            return Decision("device", "cuda", "auto: no mps; an NVIDIA GPU (cuda) is available")
        return Decision("device", "cpu", "auto: neither mps nor cuda is available")
    if setting == "mps" and not mps_available:
        raise DeviceError("device: mps was asked for but this PyTorch build cannot use an Apple GPU; "
                          "use --device auto or cpu")
    if setting == "cuda" and not cuda_available:
        raise DeviceError("device: cuda was asked for but no CUDA GPU is visible; use --device auto or cpu")
    return Decision("device", setting, "set by the user")


@dataclass(frozen=True)
class DtypeFacts:
    """What the dtype choice reads besides the setting, the device and the family."""

    macos: tuple[int, int] | None = None  # (major, minor); None off a Mac
    chip: int | None = None  # Apple's M generation (1 for M1, 3 for M3 Pro...); None when unknown
    torch_version: str = ""
    cuda_bf16: bool = True  # torch.cuda.is_bf16_supported(); Ampere and later


def parse_macos_version(version: str) -> tuple[int, int] | None:
    """(major, minor) from platform.mac_ver()'s '14.4.1'; None for '' (not a Mac)."""
    parts = version.split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 and parts[1] else 0
    except ValueError:
        return None


def apple_chip_generation(brand: str) -> int | None:
    """1 for 'Apple M1', 2 for 'Apple M2 Pro', ...; None for any other CPU."""
    words = brand.split()
    if len(words) >= 2 and words[0] == "Apple" and words[1][:1] == "M" and words[1][1:].isdigit():
        return int(words[1][1:])
    return None


# bfloat16 on mps: MPSGraph has it from macOS 14 (Sonoma), and PyTorch enables it there from 2.3
# (pytorch/pytorch#119641). M1 and M2 have no bfloat16 in hardware: Metal emulates it in float32, so it
# runs but gains no speed there (huggingface/transformers#40458); M3 and later compute it natively.
MPS_BF16_MACOS = (14, 0)
MPS_BF16_TORCH = (2, 3)
LAST_EMULATED_BF16_CHIP = 2


def mps_has_bfloat16(facts: DtypeFacts) -> bool:
    return (facts.macos is not None and facts.macos >= MPS_BF16_MACOS
            and parse_torch_version(facts.torch_version) >= MPS_BF16_TORCH)


def _bf16_on_mps_note(facts: DtypeFacts) -> str:
    if facts.chip is not None and facts.chip <= LAST_EMULATED_BF16_CHIP:
        return f"; M{facts.chip} has no native bfloat16, so Metal emulates it: slower than on M3 and later"
    return ""


def _family_bits(family) -> tuple[str, str, bool, str]:
    """(label, preferred dtype, float16 safe, source) of a family entry, or SD's when unknown."""
    from tui.engine.families.entry import SD_PRECISION

    precision = family.precision if family is not None else SD_PRECISION
    label = family.label if family is not None else "this model"
    return label, precision.preferred, precision.float16_safe, precision.source


def choose_dtype(setting: str, device: str, family=None, facts: DtypeFacts = DtypeFacts()) -> Decision:
    """The dtype a model of ``family`` (a families.Family, or None when not known) runs in on ``device``.
    An explicit setting is always obeyed, with a warning in its reason where it is known to break."""
    if setting not in DTYPES:
        raise DeviceError(f"dtype: unknown {setting!r}; use one of {', '.join(DTYPES)}")
    if setting != "auto":
        return Decision("dtype", setting, "set by the user" + _dtype_warning(setting, device, family, facts))
    if device == "cpu":
        return Decision("dtype", "float32", "auto: the CPU computes float16 slowly or not at all")
    label, preferred, float16_safe, source = _family_bits(family)
    if preferred == "float16":
        return Decision("dtype", "float16", f"auto: half precision halves memory on {device}")
    if device == "cuda":
        return _bf16_family_on_cuda(label, float16_safe, source, facts)
    return _bf16_family_on_mps(label, float16_safe, source, facts)


def _bf16_family_on_cuda(label: str, float16_safe: bool, source: str, facts: DtypeFacts) -> Decision:
    if facts.cuda_bf16:
        return Decision("dtype", "bfloat16", f"auto: {label} is published and run in bfloat16")
    if float16_safe:
        return Decision("dtype", "float16", f"auto: this GPU has no bfloat16, and {label} runs in float16")
    return Decision("dtype", "float32", f"auto: this GPU has no bfloat16 and {source}; float32 doubles the "
                                        "memory the weights take")


def _bf16_family_on_mps(label: str, float16_safe: bool, source: str, facts: DtypeFacts) -> Decision:
    if mps_has_bfloat16(facts):
        return Decision("dtype", "bfloat16", f"auto: {label} is published and run in bfloat16, which mps has on "
                                             f"macOS 14 and later{_bf16_on_mps_note(facts)}")
    missing = ("bfloat16 on mps needs macOS 14 and torch 2.3 or later (pytorch/pytorch#119641), "
               f"here {_macos_text(facts)} and torch {facts.torch_version or 'unknown'}")
    if float16_safe:
        return Decision("dtype", "float16", f"auto: {missing}; {label} runs in float16")
    return Decision("dtype", "float32", f"auto: {missing}, and {source}: float32, which doubles the memory "
                                        "the weights take")


def _macos_text(facts: DtypeFacts) -> str:
    return f"macOS {facts.macos[0]}.{facts.macos[1]}" if facts.macos else "macOS unknown"


def _dtype_warning(setting: str, device: str, family, facts: DtypeFacts) -> str:
    label, _preferred, float16_safe, source = _family_bits(family)
    if device == "cpu" and setting == "float16":
        return " (float16 on the CPU is slow)"
    if setting == "float16" and device != "cpu" and not float16_safe:
        return f"; beware: {source}"
    if setting == "bfloat16" and device == "mps" and not mps_has_bfloat16(facts):
        return (f"; beware: bfloat16 on mps needs macOS 14 and torch 2.3 or later (pytorch/pytorch#119641), "
                f"here {_macos_text(facts)} and torch {facts.torch_version or 'unknown'}")
    if setting == "bfloat16" and device == "mps":
        return _bf16_on_mps_note(facts)
    if setting == "bfloat16" and device == "cuda" and not facts.cuda_bf16:
        return "; beware: this GPU has no bfloat16"
    return ""


# Sliced attention on mps reads uninitialised memory through torch.baddbmm(beta=0), and SDXL then
# gives NaN, that is black, images (diffusers issues 11229 and 14438; the PyTorch fix,
# pytorch/pytorch#187522, is not in 2.13).
SDXL_SLICING_ON_MPS = "SDXL with sliced attention on mps gives black (NaN) images: diffusers issues 11229, 14438"


def choose_attention_slicing(setting: str, device: str, total_ram: int, family_base: str = "") -> Decision:
    if setting not in SWITCHES:
        raise DeviceError(f"attention slicing: unknown {setting!r}; use one of {', '.join(SWITCHES)}")
    sdxl_on_mps = device == "mps" and family_base == SDXL
    if setting != "auto":
        warning = f"; {SDXL_SLICING_ON_MPS}" if sdxl_on_mps and setting == "on" else ""
        return Decision("attention slicing", setting == "on", "set by the user" + warning)
    if sdxl_on_mps:
        return Decision("attention slicing", False, f"auto: off, because {SDXL_SLICING_ON_MPS}")
    gib = total_ram / GIB
    if device == "mps" and total_ram < SLICING_RAM_THRESHOLD:
        return Decision("attention slicing", True,
                        f"auto: mps with {gib:.0f} GiB of unified memory, under 64 GiB, where slicing "
                        "avoids memory pressure")
    if device == "mps":
        return Decision("attention slicing", False,
                        f"auto: mps with {gib:.0f} GiB of unified memory, enough without slicing")
    return Decision("attention slicing", False, f"auto: off on {device}, where it only slows attention down")


# The VAE's decoder runs self-attention over every latent position (diffusers' AutoencoderKL mid
# block), so its scores grow with the square of the pixel count: 0.5 GiB at 1024x1024 in float16,
# 8 GiB at 2048x2048. On mps, scaled_dot_product_attention computes them whole, and a decode that
# outgrows memory swaps or fails at the very end of a job. Tiled decoding (diffusers'
# AutoencoderKL.enable_tiling, which InvokeAI also turns on for large images, invoke-ai/InvokeAI#2920)
# decodes in overlapping tiles of the model's own size and blends their seams.
VAE_ATTENTION_SHARE = 4  # tile when the scores would take more than a quarter of the memory


def vae_attention_bytes(width: int, height: int, dtype_bytes: int) -> int:
    """The VAE decoder's attention scores for one image: one per pair of latent positions."""
    positions = (width // 8) * (height // 8)
    return positions * positions * dtype_bytes


def choose_vae_tiling(setting: str, device: str, memory_total: int, width: int, height: int,
                      dtype_bytes: int) -> Decision:
    """Whether this job's image is decoded in tiles; ``memory_total``: the device's (unified
    memory on mps, the card on cuda, RAM on the CPU)."""
    if setting not in SWITCHES:
        raise DeviceError(f"VAE tiling: unknown {setting!r}; use one of {', '.join(SWITCHES)}")
    if setting != "auto":
        return Decision("VAE tiling", setting == "on", "set by the user")
    need = vae_attention_bytes(width, height, dtype_bytes)
    share = f"{width}x{height} needs {need / GIB:.1f} GiB for the VAE's attention, of {memory_total / GIB:.0f} GiB"
    if need * VAE_ATTENTION_SHARE > memory_total:
        return Decision("VAE tiling", True, f"auto: on, {share} on {device}")
    return Decision("VAE tiling", False, f"auto: off, {share} on {device}")


# Text encoders run once per new prompt (the prompt cache answers re-rolls), yet Z-Image's Qwen3,
# FLUX.1's T5-XXL and Qwen-Image's Qwen2.5-VL are a third or more of their models' weights.
TEXT_ENCODER_SETTINGS = ("auto", "keep", "free")
KEEP, TO_RAM, DROP = "keep", "move to RAM", "drop"
GB = 1000**3  # as the families' measured working memory is given


def _gb(count: int) -> str:
    """As the memory line and the log's other figures give them (memory.format_bytes, which imports this module)."""
    return f"{count / GIB:.1f} GB"


def choose_text_encoder_residency(setting: str, device: str, resident_weight_bytes: int, encoder_bytes: int,
                                  job_working_bytes: int | None, device_limit_bytes: int | None,
                                  reloadable: bool = True) -> Decision:
    """Whether the text encoders stay on the device while images denoise, and how they leave.

    ``resident_weight_bytes``: every weight on the device, the encoders' ``encoder_bytes`` among them;
    ``job_working_bytes``: a job's working memory beyond the weights (None: not measured);
    ``device_limit_bytes``: what the device may hold comfortably (fit.Budget.comfortable: a Mac's
    recommended working set, most of the card's free memory on cuda, of the RAM on the CPU); ``reloadable``:
    the encoders can be read again from a folder (not for the demo model or a whole checkpoint file).

    On cuda they move to RAM and come back to the GPU for a new prompt's encoding: a copy over PCIe
    rather than encoding on the CPU, which is many times slower for a multi-billion-weight encoder in
    bfloat16, and which some pipelines cannot do (Z-Image's and Qwen-Image's put the tokens on the
    pipeline's device, not the encoder's). On mps and the CPU, RAM is the memory in question, so
    moving frees nothing: they are dropped and read from disk again for the next new prompt."""
    if setting not in TEXT_ENCODER_SETTINGS:
        raise DeviceError(f"text encoders: unknown {setting!r}; use one of {', '.join(TEXT_ENCODER_SETTINGS)}")
    name = "text encoders"
    if encoder_bytes <= 0:
        return Decision(name, KEEP, "the model has no text encoder to free")
    if setting == "keep":
        return Decision(name, KEEP, "set by the user")
    if setting == "free":
        why = "set by the user"
    elif not device_limit_bytes:
        return Decision(name, KEEP, f"auto: kept, what {device} may hold is not known")
    else:
        working = job_working_bytes or 0
        unmeasured = "" if job_working_bytes is not None else " (a job's working memory is not measured here)"
        need = resident_weight_bytes + working
        figures = (f"weights {_gb(resident_weight_bytes)} + a job {_gb(working)} = "
                   f"{_gb(need)}{unmeasured}")
        if need <= device_limit_bytes:
            return Decision(name, KEEP, f"auto: kept, {figures} fit the {_gb(device_limit_bytes)} {device} may hold")
        why = (f"auto: {figures} is over the {_gb(device_limit_bytes)} {device} may hold; without the encoders' "
               f"{_gb(encoder_bytes)}, {_gb(need - encoder_bytes)}")
    if device == "cuda":
        return Decision(name, TO_RAM, f"{why}; they wait in RAM and come back to the GPU for a new prompt")
    if not reloadable:
        return Decision(name, KEEP, f"{why}, but they stay: they cannot be read again (the model was not "
                                    "loaded from a folder)")
    return Decision(name, DROP, f"{why}; they are read from disk again for a new prompt")


def choose_warmup(setting: str, device: str, torch_version: str) -> Decision:
    if setting not in SWITCHES:
        raise DeviceError(f"warm-up: unknown {setting!r}; use one of {', '.join(SWITCHES)}")
    if setting != "auto":
        return Decision("warm-up pass", setting == "on", "set by the user")
    if device == "mps" and parse_torch_version(torch_version) < (2, 0):
        return Decision("warm-up pass", True,
                        f"auto: torch {torch_version} on mps gives a wrong first image without "
                        "a 1-step warm-up")
    return Decision("warm-up pass", False, f"auto: not needed with torch {torch_version} on {device}")


def choose_batch_size(device: str, count: int) -> Decision:
    """How many images one pipeline call makes."""
    if device == "mps":
        return Decision("images per pipeline call", 1,
                        "mps: several images are made one after another, never batched")
    if device == "cpu":
        return Decision("images per pipeline call", 1, "cpu: batching gains nothing and delays the first image")
    size = max(1, min(count, 4))
    return Decision("images per pipeline call", size, f"{device}: up to 4 images per call")


def enable_mps_fallback() -> bool:
    """Let ops mps lacks run on the CPU. Must run before torch is first imported.

    Returns whether sdtui set the variable (a user's own value is kept).
    """
    if "PYTORCH_ENABLE_MPS_FALLBACK" in os.environ:
        return False
    os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] = "1"
    return True


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA raises torch.OutOfMemoryError; mps raises a RuntimeError with this text."""
    if type(error).__name__ == "OutOfMemoryError":
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("MPS backend out of memory" in text
                                                 or "CUDA out of memory" in text)


# --- Apple Silicon: memory limit, slow torch releases, freeing memory between jobs ----------

# PyTorch's mps allocator refuses allocations past PYTORCH_MPS_HIGH_WATERMARK_RATIO times the
# device's recommended working set (default 1.7); 0.0 removes the limit, so an oversized job runs
# into swap instead of failing (PyTorch docs, "MPS Environment Variables").
MPS_WATERMARK_VARIABLE = "PYTORCH_MPS_HIGH_WATERMARK_RATIO"
MPS_DEFAULT_WATERMARK = 1.7


@dataclass(frozen=True)
class MpsLimit:
    limit: int | None  # bytes the allocator will give; None: no limit
    text: str  # for the status panel

    @property
    def unlimited(self) -> bool:
        return self.limit is None


def mps_memory_limit(recommended: int | None, ratio_setting: str | None) -> MpsLimit:
    """The mps allocator's ceiling from the recommended working set and the watermark variable."""
    try:
        ratio = float(ratio_setting) if ratio_setting not in (None, "") else MPS_DEFAULT_WATERMARK
    except ValueError:
        ratio = MPS_DEFAULT_WATERMARK
    if ratio <= 0:
        return MpsLimit(None, f"no limit ({MPS_WATERMARK_VARIABLE}=0): big jobs swap instead of failing")
    if recommended is None:
        return MpsLimit(None, "limit unknown")
    source = "set" if ratio_setting not in (None, "") else "default"
    return MpsLimit(int(recommended * ratio), f"limit {ratio:g} x recommended ({source})")


def swap_advice(device: str, ratio_setting: str | None) -> str:
    """What to add to a swap warning: on mps, the watermark that decides between swap and failing."""
    if device != "mps":
        return ""
    if ratio_setting not in (None, "") and mps_memory_limit(1, ratio_setting).unlimited:
        return (f"; {MPS_WATERMARK_VARIABLE}=0.0 lets jobs past the GPU's memory run into swap: unset it "
                "to have them stop with an out-of-memory error instead")
    return f"; {MPS_WATERMARK_VARIABLE} (default 1.7) sets how far past the GPU's working set a job may go"


def parse_torch_release(version: str) -> tuple[int, int, int]:
    """(major, minor, patch) from '2.4.0', '2.4.1+cpu' or '2.5.0a0+git12'."""
    major, minor = parse_torch_version(version)
    parts = version.split("+")[0].split(".")
    digits = "".join(ch for ch in (parts[2] if len(parts) > 2 else "0").split("a")[0] if ch.isdigit())
    return major, minor, int(digits or 0)


@dataclass(frozen=True)
class TorchBreakage:
    """A torch release range (inclusive) that runs some families badly on mps."""

    families: frozenset[str]
    first: tuple[int, int, int]
    last: tuple[int, int, int]
    text: str  # what goes wrong, with its source


# Only breakages with a source. FLUX.1's, Z-Image's, Qwen-Image's and FLUX.2's rotary embeddings do not
# need float64, which mps lacks: diffusers computes FLUX.1's and FLUX.2's in float32 on mps
# (maybe_adjust_dtype_for_device, after huggingface/diffusers#9047), Z-Image's in float64 on the CPU
# before moving them, and Qwen-Image's in float32.
MPS_TORCH_BREAKAGES = (
    TorchBreakage(frozenset({SDXL}), (2, 5, 0), (2, 5, 99),
                  "runs SDXL on mps about 60% slower and with 50% more memory (pytorch issue 139389); "
                  "torch 2.4 or 2.6 and later do not"),
    TorchBreakage(frozenset({FLUX, FLUX_KONTEXT}), (2, 4, 0), (2, 4, 0),
                  "gives FLUX.1 images of noise on mps (pytorch issue 133520, black-forest-labs/flux#30); "
                  "torch 2.4.1 fixed it"),
)


def mps_torch_warning(device: str, torch_version: str, family_base: str) -> str | None:
    """A known bad torch release on mps for this family, said once at load."""
    if device != "mps":
        return None
    release = parse_torch_release(torch_version)
    for breakage in MPS_TORCH_BREAKAGES:
        if family_base in breakage.families and breakage.first <= release <= breakage.last:
            return f"torch {torch_version} {breakage.text}"
    return None


def has_device_cache(device: str) -> bool:
    """Whether the device's allocator keeps freed blocks for reuse (mps, cuda), which empty_cache hands back."""
    return device in ("mps", "cuda")


def needs_float32_decode(dtype: str, brightest: int) -> bool:
    """A float16 VAE that overflows gives NaN, which becomes an all-black image (every channel 0):
    decode that one again in float32, as A1111 does after its NaN check."""
    return dtype == "float16" and brightest == 0


# Two threads running mps work at once crash inside Metal (pytorch issue 197805), so a model
# loaded on mps is used only from the thread that loaded it (sdtui's generation thread).
MPS_ONE_THREAD = ("mps work must stay on the thread that loaded the model: Metal crashes when two threads "
                  "use it (pytorch issue 197805)")


def wrong_thread(device: str, owner: int | None, current: int) -> bool:
    return device == "mps" and owner is not None and owner != current


# --- the machine, for history and benchmarks ------------------------------------------------


def describe_machine(device: str, torch_version: str, system: str, release: str, mac_version: str,
                     gpu_name: str, cpu_name: str) -> dict[str, str]:
    """torch version, OS version and chip (or GPU) as two machines' results can be compared by."""
    if system == "Darwin":
        os_text = f"macOS {mac_version}" if mac_version else f"Darwin {release}"
    else:
        os_text = f"{system} {release}".strip()
    chip = gpu_name if device == "cuda" and gpu_name else cpu_name
    return {"torch": torch_version, "os": os_text, "chip": chip or "unknown"}


def local_dtype_facts() -> DtypeFacts:
    """DtypeFacts without importing torch, for the client's estimates: torch's version from its package
    metadata, and bfloat16 taken as present on a CUDA GPU (the engine asks the GPU itself)."""
    import platform
    from importlib import metadata

    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = ""
    macos = parse_macos_version(platform.mac_ver()[0])
    return DtypeFacts(macos, apple_chip_generation(cpu_brand()) if macos else None, torch_version, True)


def expected_device(setting: str, loaded: str, system: str) -> str:
    """The device a model will load on, as the client can tell without torch: the setting, else the
    device of the loaded model, else mps on a Mac and cuda elsewhere (the engine decides for real)."""
    if setting in ("mps", "cuda", "cpu"):
        return setting
    if loaded:
        return loaded
    return "mps" if system == "Darwin" else "cuda"


def machine_facts(device: str) -> dict[str, str]:
    """describe_machine for this machine (imports torch)."""
    import platform

    import torch

    gpu = torch.cuda.get_device_name() if device == "cuda" and torch.cuda.is_available() else ""
    return describe_machine(device, torch.__version__, platform.system(), platform.release(),
                            platform.mac_ver()[0], gpu, cpu_brand() or platform.processor())


def cpu_brand() -> str:
    """'Apple M2 Pro' on a Mac, the model name from /proc/cpuinfo on Linux, '' where neither says."""
    import platform
    import subprocess

    if platform.system() == "Darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=2).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            return next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    except OSError:
        return ""


def dtype_facts(device: str) -> DtypeFacts:
    """DtypeFacts for this machine (imports torch)."""
    import platform

    import torch

    cuda_bf16 = device == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return DtypeFacts(parse_macos_version(platform.mac_ver()[0]), apple_chip_generation(cpu_brand()),
                      torch.__version__, cuda_bf16)
