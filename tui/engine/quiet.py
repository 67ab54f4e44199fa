"""Keep library chatter off the terminal.

diffusers, transformers and huggingface_hub each install their own stderr handler and
print warnings and tqdm bars. sdtui owns the terminal (a progress line, or a full-screen
app), so their logs are re-routed to Python logging, which goes to sdtui's log.
"""

from __future__ import annotations

import logging
import os

_done = False
# transformers warns that a prompt over 77 tokens "will result in indexing errors" as soon as it is
# tokenized whole; sdtui then encodes it in chunks of 75 (A1111's rules), so the warning is false.
LONG_PROMPT_WARNING = "Token indices sequence length is longer than the specified maximum sequence length"
TOKENIZER_LOGGERS = ("transformers.tokenization_utils_base", "transformers.tokenization_utils",
                     "transformers.tokenization_utils_fast")


class _NotTheLongPromptWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(LONG_PROMPT_WARNING)


def quiet_libraries() -> None:
    """Route library logs to Python logging and turn their progress bars off. Idempotent."""
    global _done
    if _done:
        return
    _done = True
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.captureWarnings(True)

    import huggingface_hub.utils as hub_utils

    hub_utils.disable_progress_bars()
    hub_logging = hub_utils.logging
    for module in (hub_logging, _transformers_logging(), _diffusers_logging()):
        if module is None:
            continue
        if hasattr(module, "disable_default_handler"):
            module.disable_default_handler()
        module.enable_propagation()
        if hasattr(module, "disable_progress_bar"):
            module.disable_progress_bar()
    # With no handler anywhere, Python prints warnings through its last-resort stderr
    # handler; a NullHandler on each library logger stops that while records still
    # propagate to whatever handlers sdtui configured on the root logger.
    for name in ("diffusers", "transformers", "huggingface_hub", "accelerate", "bitsandbytes", "py.warnings",
                 "torch"):
        logging.getLogger(name).addHandler(logging.NullHandler())
    for name in TOKENIZER_LOGGERS:  # a filter on the logger that makes the record, so no handler sees it
        logging.getLogger(name).addFilter(_NotTheLongPromptWarning())


def _transformers_logging():
    from transformers.utils import logging as transformers_logging

    return transformers_logging


def _diffusers_logging():
    from diffusers.utils import logging as diffusers_logging

    return diffusers_logging
