"""Whether a model's estimated need fits what this machine's device may use: fits, tight, or will
swap (on cuda: will not fit, as a GPU's memory has no swap). Pure functions of figures the engine or
the client read: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from tui.engine.estimate import Estimate, gb
from tui.engine.memory import MemorySample

FITS, TIGHT, OVER = "fits", "tight", "over"
GIB = 1024**3

# Metal's recommendedMaxWorkingSetSize, what macOS lets the GPU keep resident, where torch cannot be
# asked (torch.mps.recommended_max_memory, which the engine reports once it runs): two thirds of the
# memory up to 32 GB (10922.67 MB of 16 GB, 21845.34 MB of 32 GB, as llama.cpp logs it:
# ggml-org/llama.cpp#1870, ollama/ollama#434), three quarters from 36 GB (48 of 64 GB).
SMALL_MAC = 32 * GIB


def recommended_working_set(total_ram: int) -> int:
    return total_ram * 2 // 3 if total_ram <= SMALL_MAC else total_ram * 3 // 4


# What macOS and a user's usual apps hold at the least, where what others use now is unknown.
OTHERS_AT_LEAST = 4 * GIB
TIGHT_SHARE = 0.85  # on cuda and cpu: past this share of the limit a model is tight


@dataclass(frozen=True)
class Budget:
    """What the device may use. ``comfortable``: up to here a model fits; ``limit``: past it, it swaps
    (cuda: fails for want of memory); ``ceiling``: the mps allocator's own limit, past which a job stops
    with an out-of-memory error (None: none below the limit)."""

    device: str
    comfortable: int
    limit: int
    source: str  # what the figures are, for the log: "the GPU's recommended working set of 32 GB"
    ceiling: int | None = None


def mps_budget(total_ram: int, others_used: int | None, recommended: int | None = None,
               allocator_limit: int | None = None) -> Budget:
    """On a Mac: a model fits in the GPU's recommended working set; past it, it still runs while the
    memory the rest of the system leaves is enough (tight); past that, it swaps. ``allocator_limit``:
    PYTORCH_MPS_HIGH_WATERMARK_RATIO times the working set (device.mps_memory_limit)."""
    recommended = recommended or recommended_working_set(total_ram)
    limit = total_ram - max(others_used or 0, OTHERS_AT_LEAST)
    source = f"{gb(recommended)} GB recommended for the GPU of {gb(total_ram)} GB unified memory"
    return Budget("mps", min(recommended, limit), max(limit, recommended), source, allocator_limit)


def cuda_budget(free: int, total: int, held_by_sdtui: int = 0) -> Budget:
    """On cuda: the card's free memory, plus what sdtui's loaded model holds (it is unloaded first)."""
    usable = min(total, free + held_by_sdtui)
    return Budget("cuda", int(usable * TIGHT_SHARE), usable, f"{gb(usable)} GB free of the GPU's {gb(total)} GB")


def cpu_budget(available: int, total: int, held_by_sdtui: int = 0) -> Budget:
    usable = min(total, available + held_by_sdtui)
    return Budget("cpu", int(usable * TIGHT_SHARE), usable, f"{gb(usable)} GB of RAM available of {gb(total)} GB")


@dataclass(frozen=True)
class Fit:
    verdict: str  # FITS | TIGHT | OVER
    need: int
    budget: Budget

    @property
    def word(self) -> str:
        """What the verdict means on this device: a Mac or a CPU swaps; a GPU's memory runs out."""
        if self.verdict != OVER:
            return self.verdict
        if self.budget.device == "cuda":
            return "too big"
        return "swaps"

    def label(self, mark: str = "") -> str:
        """For the picker's column: "fits 15/23 GB", "tight 22/23 GB", "swaps 40/23 GB": the need against
        the most the system can give it (past that it swaps); ``mark`` follows the need ("+": a job's
        working memory comes on top)."""
        return f"{self.word} {gb(self.need)}{mark}/{gb(self.budget.limit)} GB"

    def sentence(self) -> str:
        """For the log: the need against the budget, and what happens."""
        need = f"~{gb(self.need)} GB"
        if self.verdict == FITS:
            return f"needs {need}: fits in {self.budget.source}"
        if self.verdict == TIGHT:
            return (f"needs {need}, more than the {gb(self.budget.comfortable)} GB that is comfortable "
                    f"({self.budget.source}): it runs, but other apps' memory may push it into swap")
        if self.budget.device == "cuda":
            return f"needs {need}, more than {self.budget.source}: it will stop out of memory"
        if self.budget.ceiling is not None and self.need > self.budget.ceiling:
            return (f"needs {need}, more than the {gb(self.budget.ceiling)} GB the mps allocator allows "
                    "(PYTORCH_MPS_HIGH_WATERMARK_RATIO): it will stop out of memory")
        return (f"needs {need}, more than the {gb(self.budget.limit)} GB the system can give it "
                f"({self.budget.source}): it will swap, and a job can take ten times as long")


def judge(need: int, budget: Budget) -> Fit:
    if need <= budget.comfortable:
        return Fit(FITS, need, budget)
    if need <= budget.limit and (budget.ceiling is None or need <= budget.ceiling):
        return Fit(TIGHT, need, budget)
    return Fit(OVER, need, budget)


def budget_from_sample(device: str, sample: MemorySample, held_by_sdtui: int = 0) -> Budget | None:
    """The budget from a memory reading of the process that will load the model (sdtui's server);
    ``held_by_sdtui``: what its loaded model holds, given back before another loads. None on cuda
    when the reading has no free figure (a client's own reading)."""
    if device == "mps":
        others = max(0, sample.system_used - sample.process_rss)
        ceiling = None if sample.device_unlimited else sample.device_limit
        return mps_budget(sample.system_total, others, sample.device_recommended, ceiling)
    if device == "cuda":
        if sample.device_free is None or sample.device_limit is None:
            return None
        return cuda_budget(sample.device_free, sample.device_limit, held_by_sdtui)
    return cpu_budget(sample.system_total - sample.system_used, sample.system_total, held_by_sdtui)


SIZE_STEP = 64
SMALLEST_SUGGESTED = 512


def what_fits_instead(estimate: Estimate, budget: Budget, alternatives: tuple[tuple[str, int], ...] = ()) -> list[str]:
    """Ways the job would fit ``budget`` where ``estimate`` does not: the text encoders freed after
    encoding, a smaller size, half precision, or one of ``alternatives`` (a label and its need: a
    quantized file, a smaller model of the family), the first of them that fits."""
    fitting = budget.comfortable
    if estimate.peak <= fitting:
        return []
    ways = []
    if estimate.encoders and estimate.peak_without_encoders <= fitting:
        ways.append(f"with its text encoders freed after encoding, ~{gb(estimate.peak_without_encoders)} GB")
    size = _largest_size_that_fits(estimate, fitting)
    if size and size < min(estimate.size):
        ways.append(f"at {size}x{size}, ~{gb(estimate.at_size((size, size)).peak)} GB")
    if estimate.dtype_bytes == 4:
        ways.append("in half precision (--dtype float16 or bfloat16) the weights take half")
    ways += [f"{label}, ~{gb(need)} GB" for label, need in alternatives if need <= fitting][:1]
    return ways


def _largest_size_that_fits(estimate: Estimate, fitting: int) -> int | None:
    if estimate.working is None or estimate.weights >= fitting:
        return None
    size = (min(estimate.size) // SIZE_STEP) * SIZE_STEP
    while size >= SMALLEST_SUGGESTED:
        if estimate.at_size((size, size)).peak <= fitting:
            return size
        size -= SIZE_STEP
    return None


def memory_line(label: str, estimate: Estimate, budget: Budget | None,
                alternatives=lambda: ()) -> tuple[str, bool]:
    """The log's line on what ``label`` will need against ``budget``, with what would fit instead where
    it will not (``alternatives()``: other models' labels and needs, asked for only then); and whether it
    will not (swap, or stop for want of memory)."""
    if budget is None:
        return f"memory: {label} needs ~{gb(estimate.peak)} GB ({estimate.breakdown()})", False
    fit = judge(estimate.peak, budget)
    line = f"memory: {label} {fit.sentence()} ({estimate.breakdown()})"
    if fit.verdict != OVER:
        return line, False
    ways = what_fits_instead(estimate, budget, tuple(alternatives()))
    return line + ("; what would fit: " + "; ".join(ways) if ways else ""), True


def held_by_server(device: str, sample: MemorySample) -> int:
    """What sdtui's server holds by the reading it gave, given back when another model loads: the
    card's reserved memory on cuda; its process on the CPU (on a Mac, its share is already left out of
    what others use)."""
    if device == "cuda":
        return sample.device_reserved or 0
    return sample.process_rss if device == "cpu" else 0
