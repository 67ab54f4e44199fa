"""What a generation asks for, and the rules it must satisfy before any work starts."""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, replace
from typing import Any, Mapping

from tui.engine.img2img import steps_run
from tui.engine.schedulers import DEFAULT_SCHEDULER, find_scheduler, scheduler_names

SIZE_MIN, SIZE_MAX = 64, 2048
STEPS_MIN, STEPS_MAX = 1, 500
GUIDANCE_MIN, GUIDANCE_MAX = 0.0, 50.0
# Seeds are 64-bit as in ComfyUI and Fooocus: torch's CPU generator takes 0..2**64-1, and the
# starting noise is drawn on the CPU, so another tool's seed gives the same noise here.
SEED_MAX = 2**64 - 1
RANDOM_SEED_MAX = 2**32 - 1  # new random seeds stay short to read and type, as A1111's
PROMPT_MAX_CHARS = 20_000
COUNT_MIN, COUNT_MAX = 1, 100

REQUEST_FIELDS = ("prompt", "negative_prompt", "steps", "guidance", "width", "height",
                  "seed", "scheduler", "count", "template", "init_image", "strength", "hires", "shift", "edit")
STRENGTH_DEFAULT = 0.5  # img2img: half noise, so the source's composition stays
HIRES_STRENGTH_DEFAULT = 0.45  # hires fix: enough to add detail at the new size, not to redraw it
HIRES_MAX = 4.0
SHIFT_MAX = 20.0  # flow-matching samplers' timestep shift: models use 1 to 7 (SD3 3.0, Z-Image Turbo 3.0)


@dataclass(frozen=True)
class FieldProblem:
    field: str
    message: str

    def __str__(self) -> str:
        return self.message


class InvalidRequest(ValueError):
    """One or more fields of a request are out of bounds; each problem names its field."""

    def __init__(self, problems: list[FieldProblem]):
        self.problems = problems
        super().__init__("; ".join(p.message for p in problems))

    @property
    def fields(self) -> list[str]:
        return [p.field for p in self.problems]


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    negative_prompt: str = ""
    steps: int = 20
    guidance: float = 7.0
    width: int = 512
    height: int = 512
    seed: int | None = None  # None: pick a random seed when the job starts
    scheduler: str = DEFAULT_SCHEDULER
    count: int = 1
    template: str = ""  # the wildcard template this prompt was expanded from, if it was
    init_image: str = ""  # img2img: the source image's path; empty for text-to-image
    strength: float = STRENGTH_DEFAULT  # img2img and hires fix: how much of the source is noised away
    hires: float = 0.0  # hires fix: the upscale factor (0: none); with init_image the size is already upscaled
    shift: float = 0.0  # flow-matching samplers: the timestep shift (0: the model's own schedule)
    edit: bool = False  # init_image is a picture to edit by the prompt's instruction (an edit model), not to noise

    def with_seed(self) -> "GenerationRequest":
        """This request with its seed fixed, drawing a random one if it has none."""
        if self.seed is not None:
            return self
        return replace(self, seed=random.randint(0, RANDOM_SEED_MAX))

    def seed_for(self, index: int) -> int:
        """Image ``index`` of a request uses seed+index, wrapping inside the 64-bit range."""
        assert self.seed is not None
        return (self.seed + index) % (SEED_MAX + 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def output_size(self) -> tuple[int, int]:
        """The finished image's size: a hires fix of the job's own first pass ends ``hires`` times larger."""
        if self.hires and not self.init_image:
            from tui.engine.img2img import hires_size

            return hires_size(self.width, self.height, self.hires)
        return self.width, self.height


def _as_int(field: str, value: Any, rule: str) -> tuple[int | None, FieldProblem | None]:
    problem = FieldProblem(field, f"{field}: {value!r} is not a whole number; {rule}")
    if isinstance(value, bool):
        return None, problem
    if isinstance(value, int):
        return value, None
    if isinstance(value, float) and value.is_integer():
        return int(value), None
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text, 10), None
        except ValueError:
            pass
    return None, problem


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        return None


def _check_range(field: str, value: int, low: int, high: int) -> FieldProblem | None:
    if not low <= value <= high:
        return FieldProblem(field, f"{field}: {value} is outside {low}..{high}")
    return None


def _text_problem(field: str, label: str, text: str) -> FieldProblem | None:
    """Prompts are kept and shown verbatim (control characters displayed as escapes), with
    two exceptions: NUL, which PNG text chunks and C strings cannot carry, and text beyond
    PROMPT_MAX_CHARS, far past any prompt written by hand (each 75 tokens, a few hundred
    characters, is one more chunk for the UNet to attend to)."""
    if len(text) > PROMPT_MAX_CHARS:
        return FieldProblem(field, f"{label}: {len(text):,} characters is too long; the limit is "
                                   f"{PROMPT_MAX_CHARS:,}")
    if "\0" in text:
        return FieldProblem(field, f"{label}: contains a NUL character (at position {text.index(chr(0)) + 1}); "
                                   "remove it")
    return None


def validate_request(raw: Mapping[str, Any]) -> GenerationRequest:
    """Turn user input (strings from a CLI or a form, or typed values) into a checked request.

    Every bad field is reported, each in one sentence naming the field and what is allowed.
    Fields missing from ``raw`` take the request defaults.
    """
    unknown = sorted(set(raw) - set(REQUEST_FIELDS))
    if unknown:
        raise InvalidRequest([FieldProblem(k, f"{k}: not a request field; known fields are "
                                              f"{', '.join(REQUEST_FIELDS)}") for k in unknown])
    defaults = GenerationRequest(prompt="")
    values = {**asdict(defaults), **raw}
    problems: list[FieldProblem] = []
    out: dict[str, Any] = {}

    prompt = values["prompt"]
    if not isinstance(prompt, str) or not prompt.strip():
        problems.append(FieldProblem("prompt", "prompt: must not be empty or blank"))
    else:
        out["prompt"] = prompt
    negative = values["negative_prompt"]
    if negative is None:
        negative = ""
    if not isinstance(negative, str):
        problems.append(FieldProblem("negative_prompt", "negative prompt: expected text"))
    else:
        out["negative_prompt"] = negative
    template = values["template"] or ""
    if not isinstance(template, str):
        problems.append(FieldProblem("template", "template: expected text"))
    else:
        out["template"] = template
    for field, label in (("prompt", "prompt"), ("negative_prompt", "negative prompt"), ("template", "template")):
        problem = _text_problem(field, label, out[field]) if field in out else None
        if problem:
            problems.append(problem)
    if "prompt" in out:
        from tui.engine.networks import NetworkError, extract_loras  # with the first request, not the app's first frame

        try:
            extract_loras(out["prompt"])
        except NetworkError as error:
            problems.append(FieldProblem("prompt", str(error)))

    for field, low, high in (("steps", STEPS_MIN, STEPS_MAX), ("count", COUNT_MIN, COUNT_MAX)):
        number, problem = _as_int(field, values[field], f"use {low} to {high}")
        problem = problem or _check_range(field, number, low, high)
        if problem:
            problems.append(problem)
        else:
            out[field] = number

    size_rule = f"use a multiple of 8 from {SIZE_MIN} to {SIZE_MAX}"
    for field in ("width", "height"):
        number, problem = _as_int(field, values[field], size_rule)
        if problem is None and (number % 8 or not SIZE_MIN <= number <= SIZE_MAX):
            problem = FieldProblem(field, f"{field}: {number} is not allowed; {size_rule}")
        if problem:
            problems.append(problem)
        else:
            out[field] = number

    guidance = _as_float(values["guidance"])
    if guidance is None:
        problems.append(FieldProblem("guidance", f"guidance: expected a number from 0 to 50, got "
                                                 f"{values['guidance']!r}"))
    else:
        if not math.isfinite(guidance) or not GUIDANCE_MIN <= guidance <= GUIDANCE_MAX:
            problems.append(FieldProblem("guidance", f"guidance: {guidance} is not allowed; "
                                                     "use a finite number from 0 to 50"))
        else:
            out["guidance"] = guidance

    init_image = values["init_image"] or ""
    if not isinstance(init_image, str) or "\0" in init_image:
        problems.append(FieldProblem("init_image", "init image: expected the path of an image file"))
    else:
        out["init_image"] = init_image
    for field, low, high, rule in (
            ("strength", 0.0, 1.0, "use a number above 0 and at most 1"),
            ("hires", 1.0, HIRES_MAX, f"use an upscale factor above 1 and at most {HIRES_MAX:g}, or 0 for none"),
            ("shift", 0.0, SHIFT_MAX, f"use a number above 0 and at most {SHIFT_MAX:g}, or 0 for the model's own")):
        number = _as_float(values[field])
        allowed = number is not None and (low < number <= high or (field in ("hires", "shift") and number == 0))
        if not allowed:  # NaN compares false, so it is refused too
            problems.append(FieldProblem(field, f"{field}: {values[field]!r} is not allowed; {rule}"))
        else:
            out[field] = number
    edit = values["edit"]
    if not isinstance(edit, bool):
        problems.append(FieldProblem("edit", "edit: expected true or false"))
    elif edit and not out.get("init_image"):
        problems.append(FieldProblem("edit", "edit: needs the picture to edit (init_image)"))
    elif edit and out.get("hires"):
        problems.append(FieldProblem("edit", "edit: an edit cannot also be a hires fix; leave hires at 0"))
    else:
        out["edit"] = edit
    if (out.get("init_image") or out.get("hires")) and not edit and "strength" in out and "steps" in out \
            and steps_run(out["steps"], out["strength"]) < 1:
        problems.append(FieldProblem("strength", f"strength: {out['strength']:g} of {out['steps']} steps runs no "
                                                 f"step; use at least {1 / out['steps']:.2g}"))

    seed = values["seed"]
    if seed is None or (isinstance(seed, str) and seed.strip().casefold() in ("", "random", "-1")) \
            or (isinstance(seed, int) and not isinstance(seed, bool) and seed == -1):
        out["seed"] = None
    else:
        number, problem = _as_int("seed", seed, f"use 0 to {SEED_MAX}, or 'random'")
        if problem is None and not 0 <= number <= SEED_MAX:
            problem = FieldProblem("seed", f"seed: {number} is outside 0..{SEED_MAX}; use 'random' for a new seed")
        if problem:
            problems.append(problem)
        else:
            out["seed"] = number

    scheduler = values["scheduler"]
    spec = find_scheduler(scheduler) if isinstance(scheduler, str) else None
    if spec is None:
        problems.append(FieldProblem("scheduler", f"scheduler: unknown {scheduler!r}; known schedulers are "
                                                  f"{', '.join(scheduler_names())}"))
    else:
        out["scheduler"] = spec.name

    if problems:
        raise InvalidRequest(problems)
    return GenerationRequest(**out)
