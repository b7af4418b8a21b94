"""Typed exceptions raised by the kbflow core.

The CLI turns every ``KbflowError`` into one line on stderr and a non-zero exit code;
anything else is a bug and keeps its traceback. :data:`EXIT_CODES` lists them all (README and
``kbflow nightly --help`` show the same list).
"""

from __future__ import annotations

from typing import Any


class KbflowError(Exception):
    """Base class: a problem the user can act on. ``exit_code`` is what the CLI returns."""

    exit_code = 2


class ConfigError(KbflowError):
    """Settings are inconsistent or point at something that does not exist."""


class UnknownSuggestion(ConfigError):
    """No suggestion in the review queue has this id (or a prefix matches several)."""


class DecisionConflict(KbflowError):
    """A decision that would contradict the queue: the suggestion is already accepted, edited
    or rejected, or this very decision (its id) was recorded before (a double submit)."""


class SourceError(KbflowError):
    """The export source cannot be read (missing path, unsupported format, unsafe file)."""


class ExportFormatError(SourceError):
    """A file in the export is not in a format kbflow can parse at all."""


class ValidationFailed(KbflowError):
    """A batch-level expectation failed: the run stops before anything is published."""

    exit_code = 11

    def __init__(self, message: str, failures: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.failures = failures or []


class AccountingError(KbflowError):
    """Row accounting does not sum: some input row has no outcome, or has two."""

    exit_code = 4


class ContractError(KbflowError):
    """A stage file does not match its pyarrow schema."""

    exit_code = 4


class EmbeddingError(KbflowError):
    """The embedding backend failed or returned something unusable."""

    exit_code = 5


class ModelIntegrityError(EmbeddingError):
    """The embedded default model's weights do not match the expected hash."""


class IndexError_(KbflowError):
    """An index version is missing, incomplete or outside the data home."""

    exit_code = 6


class NoLiveVersion(IndexError_):
    """No version has been published yet (``CURRENT`` is missing)."""


class ConcurrentRunError(KbflowError):
    """Another nightly run holds the data home's lock."""

    exit_code = 7


class EndpointUnavailable(EmbeddingError):
    """An embedding endpoint kept failing with transient errors after every retry."""


class DriftError(EmbeddingError):
    """The backend's vectors for the canary texts differ from those stored for its model key
    (or a text embedded alone differs from the same text in a batch): the run stops before
    vectors that are incompatible with the cache are written."""

    exit_code = 8


class StorageError(KbflowError):
    """The data home cannot be written: the disk or a file-size limit is full, a folder is
    read-only. The stage's partial files are removed; the live version is untouched."""

    exit_code = 9


class BackfillFailed(KbflowError):
    """Some units of a backfill failed (the others ran); triggering it again redoes only those."""

    exit_code = 10


class FleetFailed(KbflowError):
    """Some KBs of a fleet run failed (every other KB ran and published or was blocked on its
    own); the fleet report lists them."""

    exit_code = 12


#: Exit code of a run the quality gate blocked (the live version keeps serving).
BLOCKED_EXIT = 3

#: Exit code when Prefect's own machinery fails (its local API server does not start, its
#: database is locked, its API cannot be reached): nothing ran, try again (``EX_TEMPFAIL``).
PREFECT_EXIT = 75

#: Every exit code of the ``kbflow`` command, for the README and ``--help``.
EXIT_CODES: dict[int, str] = {
    0: "published, or unchanged",
    1: "a bug in kbflow (the traceback is printed)",
    KbflowError.exit_code: "bad settings or an unreadable export source",
    BLOCKED_EXIT: "blocked by the quality gate (the live version keeps serving)",
    AccountingError.exit_code: "row accounting or a stage file's schema is wrong",
    EmbeddingError.exit_code: "the embedding backend failed",
    IndexError_.exit_code: "no live version, or a version is incomplete",
    ConcurrentRunError.exit_code: "another run holds the data home",
    DriftError.exit_code: "the embedding backend's vectors changed (drift guard)",
    StorageError.exit_code: "the data home cannot be written (disk full, read-only)",
    BackfillFailed.exit_code: "some backfill units failed",
    ValidationFailed.exit_code: "the export was rejected by validation",
    FleetFailed.exit_code: "some KBs of a fleet run failed (the others ran)",
    PREFECT_EXIT: "Prefect's machinery failed (server start, database locked): retry",
    130: "interrupted",
}


def exit_codes_help() -> str:
    """:data:`EXIT_CODES` as lines for ``--help``."""
    return "exit codes:\n" + "\n".join(f"  {c:>3}  {what}" for c, what in EXIT_CODES.items())
