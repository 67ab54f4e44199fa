"""Command line: ``sdtui`` (the app), ``sdtui generate`` (headless).

Bad input exits 2 with one line naming the field; a runtime failure exits 1 with one
line. Heavy libraries are imported only once work starts.
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path
from typing import Any, NoReturn

from tui import __version__

from tui.cli.exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE, say as _say


class UsageError(Exception):
    """Bad input at start-up: one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


GLOBAL_PREFIX = "global_"
def _add_flag(group, spec, prefix: str = "", choices: bool = True) -> None:
    """The flag a settings field names in its metadata (``choices``: argparse checks them; the
    request's fields are checked by the request's own rules, which accept more spellings)."""
    meta = spec.metadata
    kwargs: dict[str, Any] = {"dest": prefix + spec.name, "help": meta["help"] or None}
    if isinstance(spec.default, bool):
        kwargs["action"] = "store_true"
    else:
        kwargs["metavar"] = meta["metavar"] or None
        if choices and meta["choices"]:
            kwargs["choices"] = meta["choices"]
    group.add_argument(meta["flag"], **kwargs)


def _model_flags() -> list:
    from tui.config import flag_fields
    from tui.engine.options import EngineOptions

    return flag_fields(EngineOptions)


def _add_model_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """The model flags, accepted before and after a subcommand. Values given before it are
    stored under ``prefix`` names, since argparse lets a subcommand's defaults overwrite them."""
    group = parser.add_argument_group("model and device")
    source = group.add_mutually_exclusive_group()
    for spec in _model_flags():
        _add_flag(source if spec.name == "model" else group, spec, prefix)
        if spec.name == "model":
            source.add_argument("--demo", dest=prefix + "demo", action="store_true",
                                help="use the built-in demo model (random weights, offline, makes noise)")
    parser.add_argument("-v", "--verbose", dest=prefix + "verbose", action="store_true", help="also print log lines to stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sdtui", description="Stable Diffusion in the terminal.")
    parser.add_argument("--version", action="version", version=f"sdtui {__version__}")
    _add_model_options(parser, GLOBAL_PREFIX)
    from tui.config import AppSettings, flag_fields

    parser.add_argument("--no-server", dest="app_no_server", action="store_true",
                        help="run the engine inside the app instead of the sdtui server (its jobs end when the "
                             "app does)")
    display = parser.add_argument_group("display")
    for spec in flag_fields(AppSettings):
        _add_flag(display, spec)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    generate = commands.add_parser("generate", help="make images without the interface; prints each saved path",
                                   description="Make images headless: progress on stderr, saved paths on stdout.")
    generate.add_argument("prompt", metavar="PROMPT")
    _add_job_flags(generate)
    generate.add_argument("--init-image", metavar="PATH", type=Path,
                          help="image-to-image from this image (its size, unless --width/--height say otherwise)")
    generate.add_argument("--strength", metavar="S",
                          help="how much of the source is redrawn, above 0 to 1 (default 0.5; 0.45 for --hires)")
    generate.add_argument("--hires", metavar="SCALE", nargs="?", const="1.5",
                          help="hires fix: upscale by SCALE (default 1.5) with Lanczos, then redraw lightly; "
                               "of --init-image, or of this job's own first pass")
    generate.add_argument("--grid", metavar="AXIS=V1,V2", action="append", default=[],
                          help="an X/Y grid: vary seed, steps, guidance, scheduler or sr (search and replace in the "
                               "prompt) over the values; give it twice for X and Y. Saves a contact sheet too")
    edit = commands.add_parser("edit", help="edit an image by instruction with an edit model; prints the saved path",
                               description="Edit IMAGE as INSTRUCTION says (\"make the sky stormy\"), with a model "
                                           "that edits by instruction: FLUX.1 Kontext, Qwen-Image-Edit or FLUX.2 "
                                           "klein. The result is made at IMAGE's size.")
    edit.add_argument("init_image", metavar="IMAGE", type=Path)
    edit.add_argument("prompt", metavar="INSTRUCTION")
    _add_job_flags(edit)
    edit.set_defaults(edit=True, strength=None, hires=None, grid=[])
    _add_model_options(generate)
    _add_model_options(edit)
    bench = commands.add_parser("bench", help="measure it/s and memory of slicing, dtype and schedulers here",
                                description="Measure this machine with your model and size, and recommend "
                                            "attention slicing and dtype settings.")
    bench.add_argument("--steps", metavar="N", type=int, default=10, help="steps per trial (default 10)")
    bench.add_argument("--width", metavar="W", help="default: the width setting")
    bench.add_argument("--height", metavar="H", help="default: the height setting")
    choice = bench.add_mutually_exclusive_group()
    choice.add_argument("--save", action="store_true", help="save the recommended settings without asking")
    choice.add_argument("--no-save", action="store_true", help="only print the table")
    _add_model_options(bench)
    from tui.cli.serve import add_commands

    add_commands(commands)
    return parser


def _add_job_flags(parser: argparse.ArgumentParser) -> None:
    """The flags ``generate`` and ``edit`` share: the request's settings, LoRAs, the output path."""
    from tui.config import RequestDefaults, flag_fields

    for spec in flag_fields(RequestDefaults):
        _add_flag(parser, spec, choices=False)
    parser.add_argument("--lora", metavar="NAME[:W]", action="append", default=[],
                        help="a LoRA from the models folder's loras/, weight W (default 1); repeat for more. "
                             "Same as <lora:NAME:W> in the prompt")
    parser.add_argument("--output", metavar="PATH", type=Path,
                        help="write the image here (several: PATH-1.png, PATH-2.png, ...)")
    parser.add_argument("--no-server", action="store_true",
                        help="run the model in this process instead of the sdtui server (loads it every time)")


def _config_and_flags(args: argparse.Namespace):
    """config.toml's settings, and the settings the flags give (only those given)."""
    from tui.config import ConfigError, Settings, flag_fields, load_settings
    from tui.locations import locations

    try:
        config = load_settings(locations().config_file)
    except ConfigError as error:
        raise UsageError(str(error)) from None
    values = {spec.name: getattr(args, spec.name, None) for spec in flag_fields(Settings)
              if not isinstance(spec.default, bool)}  # a switch flag (--allow-pickle) is the run's, not a setting
    if getattr(args, "demo", False):
        values["model"] = "demo"
    return config, {key: value for key, value in values.items() if value is not None}


def _with_flags(config, flags: dict):
    from tui.config import ConfigError, override

    try:
        return override(config, flags)
    except ConfigError as error:
        raise UsageError(str(error)) from None


def _settings_from(args: argparse.Namespace):
    """config.toml's settings with the flags given on top (every flag a settings field names)."""
    return _with_flags(*_config_and_flags(args))


def _merge_global(args: argparse.Namespace) -> None:
    """Flags given before the subcommand apply too (``sdtui --demo generate x``); those after it win."""
    for key in [spec.name for spec in _model_flags()] + ["demo", "verbose"]:
        if getattr(args, key, None) in (None, False):
            setattr(args, key, getattr(args, GLOBAL_PREFIX + key))
    if args.model and args.demo:
        raise UsageError("--model and --demo: give one of them, not both")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Starting the app makes some 100,000 objects and frees few: the cyclic garbage collector,
    # run every few hundred of them, took 0.06 s of a 0.6 s first frame. It is off until the app's
    # first frame is drawn (SdtuiApp.on_mount turns it back on), and back on at once for the rest.
    collecting = gc.isenabled()
    gc.disable()
    try:
        args = build_parser().parse_args(argv)
        if args.command is not None and collecting:
            gc.enable()
        if args.command in ("serve", "status", "stop"):
            from tui.cli import serve as cli_server

            if args.command == "serve":
                return cli_server.run_serve(args, _say)
            return cli_server.run_status(_say) if args.command == "status" else cli_server.run_stop(_say)
        _merge_global(args)
        if args.command in ("generate", "edit"):
            return run_generate(args)
        if args.command == "bench":
            return run_bench(args)
        return run_app(args)
    except UsageError as error:
        _say(str(error))
        return EXIT_USAGE
    except KeyboardInterrupt:  # a second Ctrl-C: quit at once (the history is consistent at every moment)
        _say("stopped", newline_first=True)
        return 130
    finally:  # the app exits the process; here only on bad input, another command or --help
        if collecting:
            gc.enable()


def run_app(args: argparse.Namespace) -> NoReturn:
    from tui.engine.device import enable_mps_fallback

    enable_mps_fallback()  # before the generation thread imports torch
    config, flags = _config_and_flags(args)
    settings = _with_flags(config, flags)
    from tui.client.app import SdtuiApp
    from tui.locations import locations
    from tui.logs import setup_logging

    places, host = locations(), None
    if args.app_no_server:
        from tui.server.host import in_process

        host = in_process(places)
    setup_logging(places.log_file, verbose=False)  # the terminal is the app's: nothing logs to stderr
    app = SdtuiApp(settings, allow_pickle=args.allow_pickle, places=places, host=host)
    # The demo model is for trying the app: it takes config.toml's settings as they are.
    if settings.model not in (config.model, "demo"):
        app.session.switching_at_start(kept=set(flags))
    _leave_now(app.run() or 0)


def _leave_now(code: int) -> NoReturn:
    """Exit without the interpreter's teardown. By now the app has restored the terminal and
    closed the history; what is left is unloading torch and its threads, which took 1.2 s of
    a 1.5 s quit and saves nothing (the history is consistent at every moment by design)."""
    import logging
    import os

    logging.shutdown()  # flush the log file
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # the terminal is gone (SIGHUP)
    os._exit(code)


def _with_loras(prompt: str, loras: list[str]) -> str:
    """The prompt with a ``<lora:NAME:W>`` tag for each ``--lora NAME[:W]``."""
    from tui.engine.networks import lora_tag

    tags = []
    for value in loras:
        name, _, weight = value.rpartition(":") if ":" in value else (value, "", "1")
        try:
            number = float(weight)
        except ValueError:
            raise UsageError(f"--lora: {value!r} has the weight {weight!r}; use NAME or NAME:WEIGHT, "
                             "such as ink:0.8") from None
        if not name.strip():
            raise UsageError(f"--lora: {value!r} names no LoRA; use NAME or NAME:WEIGHT, such as ink:0.8")
        tags.append(lora_tag(name.strip(), number))
    return " ".join([prompt, *tags]) if tags else prompt


def _image_to_image_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The request fields of --init-image, --strength and --hires. From an image, the size is
    the image's (times the hires scale) unless --width or --height is given."""
    from tui.engine.img2img import hires_size
    from tui.engine.request import (HIRES_STRENGTH_DEFAULT, SIZE_MAX, SIZE_MIN, STRENGTH_DEFAULT, InvalidRequest,
                                    validate_request)

    fields: dict[str, Any] = {}
    if args.hires is not None:
        fields["hires"] = args.hires
    if args.strength is not None:
        fields["strength"] = args.strength
    elif args.hires is not None:
        fields["strength"] = HIRES_STRENGTH_DEFAULT
    elif args.init_image is not None:
        fields["strength"] = STRENGTH_DEFAULT
    if args.init_image is None:
        return fields
    if getattr(args, "edit", False):
        fields["edit"] = True
    path = args.init_image.expanduser().resolve()
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
    except FileNotFoundError:
        raise UsageError(f"{_image_flag(args)}: {path} does not exist") from None
    except (OSError, UnidentifiedImageError):
        raise UsageError(f"{_image_flag(args)}: {path} is not an image sdtui can read (PNG, JPEG, WebP...)") from None
    fields["init_image"] = str(path)
    if args.width is None and args.height is None:
        try:
            scale = float(validate_request({"prompt": "x", "hires": args.hires or 0}).hires) or 1.0
        except InvalidRequest:
            return fields  # the request's own check names the bad --hires
        made = hires_size(width, height, scale)
        made = (min(max(made[0], SIZE_MIN), SIZE_MAX), min(max(made[1], SIZE_MIN), SIZE_MAX))
        if scale == 1.0 and made != (width, height):
            print(f"sdtui: {_image_flag(args)} is {width}x{height}; the image is made at {made[0]}x{made[1]} (sizes are "
                  f"multiples of 8, from {SIZE_MIN} to {SIZE_MAX})", file=sys.stderr)
        fields.update(width=made[0], height=made[1])
    return fields


def _image_flag(args: argparse.Namespace) -> str:
    return "IMAGE" if getattr(args, "edit", False) else "--init-image"


def run_generate(args: argparse.Namespace) -> int:
    from tui.engine.device import enable_mps_fallback

    enable_mps_fallback()  # before anything can import torch (--no-server loads the model in this process)
    from tui.cli.via_server import generate_via_server
    from tui.config import configured_keys
    from tui.engine import InvalidRequest, ModelLoadError
    from tui.engine.models import resolve_source
    from tui.engine.request import validate_request
    from tui.server.queue import prompt_problem
    from tui.locations import locations
    from tui.logs import setup_logging
    from tui.client.grid import GridError, grid_requests, parse_axes
    from tui.wildcards import WildcardError, expanded_requests

    settings = _settings_from(args)
    places = locations()
    try:
        request = validate_request({"prompt": _with_loras(args.prompt, args.lora), **settings.request_fields(),
                                    **_image_to_image_fields(args)})
        requests = expanded_requests(request, places.wildcards_dir)
        axes = parse_axes(args.grid) if args.grid else []
        if axes and len(requests) > 1:
            raise UsageError("--grid: the prompt is a wildcard template; use one or the other")
        requests = grid_requests(request, axes) if axes else requests
        resolve_source(settings.model)
    except InvalidRequest as error:
        raise UsageError("; ".join(p.message for p in error.problems)) from None
    except (ModelLoadError, WildcardError, GridError) as error:
        raise UsageError(str(error)) from None
    if args.output is not None:
        args.output = checked_output(args.output)
    models_dir = str(settings.models_folder(places.models_dir))
    for request in requests:  # before any job runs (the server checks each again): a LoRA must be there
        problem = prompt_problem(request, models_dir, args.allow_pickle)
        if problem:
            raise UsageError(problem)
    saved: dict[int, list[str]] = {}

    setup_logging(places.log_file, verbose=args.verbose)
    options = {**settings.engine_fields(), "allow_pickle": args.allow_pickle, "previews": False,
               "models_dir": models_dir}
    chosen = configured_keys(places.config_file) | _flag_keys(args) | {axis.field for axis in axes}
    try:
        status = generate_via_server(requests, settings, options, args.output, chosen, _say, saved,
                                     "cell of the grid" if axes else "prompt of the template", args.verbose,
                                     own_server=args.no_server)
    except KeyboardInterrupt:
        if not args.no_server:
            raise
        # A second Ctrl-C with the model running on this process's generation thread: the
        # interpreter's teardown under it aborts (std::terminate in torch), so leave without it.
        _say("stopped", newline_first=True)
        _leave_now(130)
    return _grid_sheet(axes, requests, saved, args.output) if axes and status == EXIT_OK else status


def checked_output(output: Path) -> Path:
    """``--output`` as an absolute path, once it names a file that can be written (folders that
    are missing are made when the image is saved); else UsageError naming the path and what is
    wrong, before any job runs."""
    import os

    path = output.expanduser().resolve()
    if path.is_dir():
        raise UsageError(f"--output: {path} is a folder; give a file name, such as {path / 'image.png'}")
    if path.exists() and not path.is_file():
        raise UsageError(f"--output: {path} exists and is not a regular file; choose another path")
    folder = path.parent
    while not folder.exists():  # the first folder that exists: the missing ones are made in it
        folder = folder.parent
    if not folder.is_dir():
        raise UsageError(f"--output: {folder} is a file, not a folder, so {path} cannot be written")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"--output: you cannot write in the folder {folder}; choose another path")
    return path


def _grid_sheet(axes, requests, saved: dict[int, list[str]], output: Path | None) -> int:
    """Compose the grid's contact sheet from the cells' saved images and print its path."""
    from tui.client.grid import GridError, grid_from_files

    cells = [saved.get(number, [None])[0] for number in range(len(requests))]
    try:
        folder = output.expanduser().resolve().parent if output else None
        path, _size = grid_from_files(cells, requests, axes, folder)
    except (GridError, OSError) as error:
        _say(f"grid: the contact sheet was not saved ({error})")
        return EXIT_FAILED
    _say(f"grid: {' x '.join(str(len(a.values)) for a in axes)} cells, contact sheet saved")
    print(path, flush=True)
    return EXIT_OK


def run_bench(args: argparse.Namespace) -> int:
    from tui.engine.device import DeviceError, enable_mps_fallback

    enable_mps_fallback()
    from tui.config import save_settings
    from tui.engine import ModelLoadError
    from tui.locations import locations
    from tui.logs import setup_logging
    from tui.cli.tuning import recommendation
    from tui.cli.tuning import run_bench as bench

    settings = _settings_from(args)
    if not 1 <= args.steps <= 100:
        raise UsageError(f"--steps {args.steps} is not allowed; use 1 to 100")
    places = locations()
    setup_logging(places.log_file, verbose=args.verbose)
    try:
        _trials, best, current = bench(settings, args.allow_pickle, args.steps, lambda line: print(line, flush=True))
    except (ModelLoadError, DeviceError) as error:
        _say(str(error))
        return EXIT_FAILED
    if best is None:
        _say("every trial failed; see the lines above")
        return EXIT_FAILED
    changes = recommendation(best, current)
    print(f"fastest without swapping: {best.name} ({best.it_per_s:.2f} it/s)")
    if not changes:
        print("your settings already match it")
        return EXIT_OK
    summary = ", ".join(f"{k} = {v}" for k, v in changes.items())
    print(f"recommended: {summary}")
    wanted = args.save
    if not args.save and not args.no_save and sys.stdin.isatty():
        wanted = input(f"save {summary} as defaults in {places.config_file}? [y/N] ").strip().lower() in ("y", "yes")
    if wanted:
        from tui.config import override

        save_settings(override(_settings_from(argparse.Namespace()), changes), places.config_file)
        print(f"saved to {places.config_file}")
    return EXIT_OK


FAMILY_DEFAULT_KEYS = ("width", "height", "steps", "guidance", "scheduler")  # what a model family may set


def _flag_keys(args: argparse.Namespace) -> set[str]:
    """The request fields the command line chose: its flags, and an init image's size."""
    chosen = {key for key in FAMILY_DEFAULT_KEYS if getattr(args, key, None) is not None}
    return chosen | ({"width", "height"} if getattr(args, "init_image", None) is not None else set())
