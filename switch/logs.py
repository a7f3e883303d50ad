"""The switch's log lines: text or JSON (one object a line, for operators who ship logs), and
never a full card number: a message or an error from Redis may name a card's key, so every
line is masked as it is formatted, tracebacks included."""

from __future__ import annotations

import json
import logging
import time
from typing import NamedTuple

from protocols.cardnumbers import mask_card_numbers_in

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class CardMaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_card_numbers_in(super().format(record))


class JsonFormatter(logging.Formatter):
    """{"time", "level", "logger", "pid", "message"[, "error"]}: the time in UTC, ISO 8601."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "pid": record.process,
            "message": mask_card_numbers_in(record.getMessage()),
        }
        if record.exc_info:
            line["error"] = mask_card_numbers_in(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False)


class LoggingSetup(NamedTuple):
    verbose: bool = False
    log_format: str = "text"


DEFAULT_LOGGING = LoggingSetup()


def configure_logging(verbose: bool, log_format: str = "text") -> None:
    """The process's logging (the command's, and each worker process's: they are spawned)."""
    handler = logging.StreamHandler()
    formatter = JsonFormatter() if log_format == "json" else CardMaskingFormatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, handlers=[handler],
                        force=True)
