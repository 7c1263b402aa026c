"""The detector base class: it owns ``detect``; a detector fills ``fit`` and ``score``.

Life cycle (scikit-learn's): the constructor takes settings only, ``fit(baseline)`` learns and
returns ``self`` (learned state ends in ``_``), ``score(window)`` scores. ``detect`` is the one
public verb: it checks the input columns, fits, scores, keeps the groups at or above their
threshold and turns them into rows of the fixed ``FINDINGS`` schema, with ids that are a content
hash of detector id + group key + window (re-running a window gives the same ids).

``score`` returns one row per group (an actor, a tenant, an address ...) with the columns of
``SCORED``. ``rows`` holds the positions, in the window, of the events that make the group: the
base class derives first/last seen, the event count and the evidence (top actions, addresses,
sample event ids, ``detectors.evidence.evidence``) from them, so every detector's evidence points
back into the lake the same way. The helpers detectors share while scoring are in
``detectors.evidence``.

Detectors work on pandas DataFrames; string columns arrive as categoricals so that a 14-day
baseline fits in memory. pandas is imported here, so the registry (``detectors/__init__``) must
only name modules, never import them.

A detector says how its work splits (``partitions``, ``Partition``): which events a finding can
depend on, so that a runner may detect each part of the population on its own (the Spark runner,
``pipeline.spark_detect``; its pure-Python reference, ``pipeline.partitioned``) and get the
findings of the whole run. A detector whose fit learns from the whole population as a bounded
sample (``TwoStep``) says how its history is summarized in parts instead.
"""

from __future__ import annotations

import hashlib
import re
import sys
import typing
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Generic, Literal, Protocol, Self, TypeVar, cast, final

import msgspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from detectors.evidence import evidence
from pipeline import schema
from pipeline.config import Relationship
from pipeline.errors import ConfigError, TenantwatchError

Severity = Literal["info", "low", "medium", "high", "critical"]

# What ``score`` returns: one row per group. ``title`` may be None (the detector's title is used);
# ``details`` is a dict merged into the evidence (what made this group unusual).
SCORED = (
    "key",
    "score",
    "threshold",
    "severity",
    "actor",
    "actor_tenant",
    "tenants",
    "baseline",
    "rows",
    "details",
    "title",
)
_PERIOD = b"tenantwatch.period"  # an Arrow baseline's time span: "<first>|<start>" (ISO)


class DetectorInputError(TenantwatchError):
    """The events given to a detector lack a column it declares."""


@dataclass(frozen=True)
class Partition:
    """A part of a detector's work that can run on its own, per key.

    An event's key is the first non-null value of its columns ``by`` (a coalesce: an empty
    string is a value, not a null); an event whose columns ``by`` are all null has the null
    key, one group like any other. The promise the detector makes by declaring it: each
    finding it keeps from this pass depends only on the window and baseline events sharing
    that key, so detecting each key's events alone (with the same window bounds and baseline
    start) and putting the findings together gives the findings of the whole run, row for
    row. ``keep``: a prefix of the group key (the text after ``"<detector id>:"`` in
    ``dedup_key``) that this pass owns; its other findings are dropped (a detector whose
    findings are about different things, each keyed on its own columns, declares one pass
    per kind of finding).

    ``link``: a column whose value ties events together (a request id: an access-log line
    and the authorizer's line for the same request). An event whose ``link`` is set and
    whose source is not ``lead`` takes the key of the ``lead`` events sharing its ``link``
    (the smallest, if they differ), when there is one; a ``lead`` event keeps its own. So a
    request's lines go with the decision's key (the token), although the access-log line
    carries no token. Each side (window, history) is linked on its own, as a detector reads
    each on its own.

    ``pipeline.partitioned`` checks a declaration against the whole run; the Spark runner
    relies on it."""

    by: tuple[str, ...]
    keep: str | None = None
    link: str | None = None
    lead: str | None = None  # the source whose events give the key (with ``link``)

    def columns(self) -> tuple[str, ...]:
        """The event columns the key is made of."""
        extra = [c for c in (self.link, "source" if self.link else None) if c]
        return tuple(dict.fromkeys([*self.by, *extra]))

    def keeps(self, dedup_key: str) -> bool:
        """Whether a finding of this pass (its ``dedup_key``, ``"<detector>:<group key>"``) is
        one the pass owns."""
        return self.keep is None or dedup_key.partition(":")[2].startswith(self.keep)


class TwoStep(Protocol):
    """A detector whose ``fit`` learns from the whole population, through a bounded sample, and
    keeps per-actor state: such a fit cannot run per key, but it can be summarized per key.

    1. ``summary_passes``: the passes over the history, each a ``Partition`` of the baseline
       (and of the window, whose actors say which state is needed). ``summarize`` makes one
       part's ``SUMMARY`` rows: candidates for the sample (``rank`` set: a deterministic
       number per row, its sample is the ``sample_size`` rows of smallest rank), and state
       (``rank`` null) for the window's actors (every actor without a window).
    2. ``learn`` fits on the sample (the smallest ranks of every part together) and
       ``absorb`` takes in the state; ``detect(..., fitted=True)`` then scores the window.

    ``fit(baseline)`` must equal ``summarize`` over the whole baseline, one part per pass,
    then ``learn`` and ``absorb``: so a runner that summarizes parts on many machines and
    learns once gives the same findings.

    A detector whose state rows are counts may say how the rows of several parts combine
    (``summary_merge``, ``merge_state``: a column -> ``"sum"`` or ``"max"``, rows alike in
    every other column made one); a runner then merges the state before the window's task
    gets it, and ``absorb`` must give the same for the rows merged or not."""

    summary_schema: pa.Schema  # the rows ``summarize`` returns; has a float64 ``rank`` column

    def summary_passes(self) -> tuple[Partition, ...]: ...

    def sample_size(self) -> int: ...

    def summarize(
        self,
        index: int,
        baseline: pa.Table,
        window: pa.Table | None,
        span: tuple[datetime, datetime],
    ) -> pa.Table: ...

    def learn(self, sample: pa.Table, span: tuple[datetime, datetime]) -> None: ...

    def absorb(self, state: pa.Table) -> None: ...


def merge_state(state: pa.Table, merge: Mapping[str, str] | None) -> pa.Table:
    """``state`` with the rows alike in every column but those of ``merge`` made one, those
    summed or maxed (``TwoStep``: a detector's ``summary_merge``), in the order of the first
    of each; ``state`` itself when ``merge`` is empty."""
    if not merge or not state.num_rows:
        return state
    keys = [c for c in state.column_names if c not in merge]
    done = state.group_by(keys, use_threads=False).aggregate([(c, h) for c, h in merge.items()])
    columns = [done[f"{c}_{merge[c]}"] if c in merge else done[c] for c in state.column_names]
    return pa.Table.from_arrays(
        [col.cast(f.type) for col, f in zip(columns, state.schema, strict=True)],
        schema=state.schema,
    )


def two_step(det: object) -> TwoStep | None:
    """``det`` as a ``TwoStep`` detector, or None if it is not one."""
    needed = ("summary_passes", "summarize", "learn", "absorb", "sample_size", "summary_schema")
    return cast(TwoStep, det) if all(hasattr(det, n) for n in needed) else None


class DetectorSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Settings every detector has; each detector subclasses this with its own defaults."""

    enabled: bool = True


S = TypeVar("S", bound=DetectorSettings)


class Detector(ABC, Generic[S]):
    """Base class of every detector. Subclasses name their settings class
    (``class CrossTenantAccess(Detector[Settings])``: it becomes ``Settings`` and types
    ``self.settings``), declare the class attributes and fill ``fit``/``score``."""

    id: ClassVar[str]
    title: ClassVar[str]
    severity: ClassVar[Severity]  # default severity; a detector may raise or lower it per group
    sources: ClassVar[tuple[str, ...]]  # event sources it reads
    columns: ClassVar[tuple[str, ...]]  # columns it needs in the window
    # Columns it uses when the window has them: a window without one (a lake written before the
    # column existed) reads it as null, and the detector falls back on what it did before.
    optional_columns: ClassVar[tuple[str, ...]] = ()
    baseline_columns: ClassVar[tuple[str, ...]]  # columns it needs in the baseline (a subset)
    # Rows of the baseline it can use, as (column, allowed values): a hint the lake reader pushes
    # down to Parquet. ``fit`` must still filter for itself (it may be given any frame).
    baseline_only: ClassVar[tuple[tuple[str, tuple[str, ...]], ...]] = ()
    # The same for the window: rows that can make no finding nor appear in one's evidence, left
    # unread (a runner's task then holds only what the detector looks at).
    window_only: ClassVar[tuple[tuple[str, tuple[str, ...]], ...]] = ()
    # True: ``detect`` hands ``fit`` a lake baseline as the Arrow table it is (strings
    # dictionary-encoded) rather than pandas, so millions of history rows never become a
    # DataFrame; ``fit`` then reads both (``period`` gives its time span either way).
    fit_arrow: ClassVar[bool] = False
    group_by: ClassVar[tuple[str, ...]]  # what one finding is about, for people
    # How the work splits by key (``Partition``): empty, the whole population is one group
    # (always correct; a runner on many machines then gives it one task).
    partitions: ClassVar[tuple[Partition, ...]] = ()
    lookback: ClassVar[timedelta]  # how much history before the window it fits on
    dedup_period: ClassVar[timedelta]  # findings sharing a dedup key within it: one incident
    # The settings class: the type argument of ``Detector[...]`` (set by ``__init_subclass__``).
    Settings: ClassVar[type[DetectorSettings]] = DetectorSettings

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            if typing.get_origin(base) is Detector:
                (cls.Settings,) = typing.get_args(base)

    def __init__(
        self,
        settings: S | None = None,
        relationships: tuple[Relationship, ...] = (),
    ) -> None:
        """``relationships`` as configured, every break-glass ticket read in: a detector never
        reads a file (``detectors.from_config`` and ``pipeline.tickets.resolve`` read them)."""
        # ``Settings`` is the class ``S`` names (``__init_subclass__``): its defaults are an ``S``.
        self.settings: S = settings if settings is not None else cast(S, self.Settings())
        if any(
            getattr(r, "tickets_file", "") or getattr(r, "tickets_table", "") for r in relationships
        ):
            # A ticket file not read would page on every legitimate break-glass access.
            raise TypeError(
                f"{self.id}: break-glass tickets not read; build detectors with "
                "detectors.from_config, or pass pipeline.tickets.resolve(cfg).relationships"
            )
        self.relationships = relationships

    # --- configuration ------------------------------------------------------------------------

    @classmethod
    def parse_settings(cls, data: Mapping[str, Any]) -> DetectorSettings:
        """Validate ``[detectors.<id>]`` into the frozen settings, or raise ``ConfigError`` with
        one line naming the key, e.g. ``detectors.x.min_count: expected an integer, got a
        string``."""
        from pipeline.config_errors import describe

        try:
            return msgspec.convert(dict(data), cls.Settings)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"detectors.{cls.id}.{describe(str(exc))}") from None

    @classmethod
    def runbook(cls) -> str:
        """The numbered runbook of the module docstring (for notifications)."""
        doc = sys.modules[cls.__module__].__doc__ or ""
        m = re.search(r"^Runbook\n-+\n(.*?)(?:\n\S[^\n]*\n-+\n|\Z)", doc, re.S | re.M)
        return m.group(1).strip() if m else ""

    # --- the hooks ----------------------------------------------------------------------------

    @abstractmethod
    def fit(self, baseline: pd.DataFrame) -> Self:
        """Learn from the history before the window (an Arrow table if ``fit_arrow``, else
        pandas); return ``self``."""

    @abstractmethod
    def score(self, window: pd.DataFrame) -> pd.DataFrame:
        """One row per group of the window with the ``SCORED`` columns."""

    # --- the public verb ----------------------------------------------------------------------

    @final
    def detect(
        self,
        baseline: pa.Table | pd.DataFrame | None,
        window: pa.Table | pd.DataFrame,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        baseline_start: datetime | None = None,
        fitted: bool = False,
    ) -> pa.Table:
        """Findings (``schema.FINDINGS``) for ``window``, given the ``baseline`` before it.

        ``start``/``end`` bound the window (default: the hours its events span) and make the
        finding ids; ``baseline_start`` is where the history begins (default: its first event),
        so that quiet hours at its start still count as history. Neither input is modified.
        ``fitted``: this detector has been fitted on the history before ``start`` already (a
        window that grows from the same start, scored again): ``baseline`` is not read.
        """
        win = self._frame(window, self.columns, "window", self.optional_columns)
        win = win[win["source"].isin(self.sources)].reset_index(drop=True)
        if win.empty:
            return schema.empty(schema.FINDINGS)
        times = win["event_time"]
        start = start or _floor_hour(times.min())
        end = end or _floor_hour(times.max()) + timedelta(hours=1)
        base: pd.DataFrame | pa.Table
        if baseline is None:
            base = pd.DataFrame({c: pd.Series(dtype=win[c].dtype) for c in self.baseline_columns})
        else:
            # The lake reader's scratch memory goes back to the system before the detector
            # allocates its own (mimalloc keeps freed pages otherwise: ~0.3 GB for 14 days).
            pa.default_memory_pool().release_unused()
            if self.fit_arrow and isinstance(baseline, pa.Table):
                base = self._table(baseline)
            else:
                base = self._frame(baseline, self.baseline_columns, "baseline")
                mine = base["source"].isin(self.sources).to_numpy()
                if not mine.all():  # the lake reader has usually filtered already: no copy
                    base = base[mine]
                base = base.reset_index(drop=True)
        first: Any = baseline_start
        if first is None and len(base):
            first = (
                pc.min(base["event_time"]).as_py()
                if isinstance(base, pa.Table)
                else base["event_time"].min()
            )
        if first is None:
            first = start - self.lookback
        if isinstance(base, pa.Table):
            span = f"{pd.Timestamp(first).isoformat()}|{pd.Timestamp(start).isoformat()}"
            base = base.replace_schema_metadata({_PERIOD: span})
        else:
            base.attrs["period"] = (pd.Timestamp(first), pd.Timestamp(start))
        win.attrs["period"] = (pd.Timestamp(start), pd.Timestamp(end))

        # An Arrow ``base`` only for ``fit_arrow``.
        scored = (self if fitted else self.fit(base)).score(win)
        missing = [c for c in SCORED if c not in scored.columns]
        if missing:
            raise TypeError(f"{self.id}.score() lacks the columns {missing}")
        flagged = scored[scored["score"] >= scored["threshold"]]
        return self._findings(win, flagged, start, end)

    # --- helpers ------------------------------------------------------------------------------

    def _table(self, data: pa.Table) -> pa.Table:
        """The baseline columns of an Arrow baseline, rows of this detector's sources."""
        missing = [c for c in self.baseline_columns if c not in data.column_names]
        if missing:
            raise DetectorInputError(f"{self.id}: the baseline lacks the columns {missing}")
        table = data.select(list(self.baseline_columns))
        source = table["source"]
        ours = pa.array(self.sources)
        if pa.types.is_dictionary(source.type):
            source = pa.table({"s": source}).unify_dictionaries()["s"]
            if not source.num_chunks or pc.all(pc.is_in(source.chunk(0).dictionary, ours)).as_py():
                return table  # every value is one of ours (the reader filtered): no copy
            source = source.cast(pa.string())
        mine = pc.is_in(source, ours)
        return table if pc.all(mine).as_py() is not False else table.filter(mine)

    def _frame(
        self,
        data: pa.Table | pd.DataFrame,
        columns: tuple[str, ...],
        what: str,
        optional: tuple[str, ...] = (),
    ) -> Any:
        names = list(data.column_names if isinstance(data, pa.Table) else data.columns)
        missing = [c for c in columns if c not in names]
        if missing:
            raise DetectorInputError(f"{self.id}: the {what} lacks the columns {missing}")
        present = [c for c in optional if c in names]
        if isinstance(data, pd.DataFrame):
            # A shallow copy: detectors add columns to their frame, never to the caller's.
            frame = data[[*columns, *present]].copy(deep=False)
        else:
            frame = to_frame(data.select([*columns, *present]))
        for c in optional:
            if c not in present:
                frame[c] = pd.Series(None, index=frame.index, dtype=object)
        return frame

    def _findings(
        self, win: pd.DataFrame, flagged: pd.DataFrame, start: datetime, end: datetime
    ) -> pa.Table:
        cols: dict[str, list[Any]] = {name: [] for name in schema.FINDINGS.names}
        start_iso, end_iso = _iso(start), _iso(end)
        for g in flagged.itertuples(index=False):  # one per finding: few, never per event
            rows = win.iloc[np.sort(np.asarray(g.rows, dtype=np.int64))]
            cols["finding_id"].append(finding_id(self.id, str(g.key), start_iso, end_iso))
            cols["detector"].append(self.id)
            cols["severity"].append(g.severity)
            cols["title"].append(g.title or self.title)
            cols["actor"].append(_opt_str(g.actor))
            cols["actor_tenant"].append(_opt_str(g.actor_tenant))
            cols["tenants"].append(sorted({str(t) for t in g.tenants}))
            cols["window_start"].append(start)
            cols["window_end"].append(end)
            cols["first_seen"].append(rows["event_time"].min() if len(rows) else None)
            cols["last_seen"].append(rows["event_time"].max() if len(rows) else None)
            cols["event_count"].append(len(rows))
            cols["score"].append(round(float(g.score), 6))
            cols["threshold"].append(float(g.threshold))
            cols["baseline"].append(str(g.baseline))
            cols["dedup_key"].append(f"{self.id}:{g.key}")
            cols["evidence"].append(evidence(rows, g.details))
            cols["suppressed_by"].append(None)  # decided by the detect stage, not a detector
        table = pa.Table.from_pydict(cols, schema=schema.FINDINGS)
        order = [
            ("severity_rank", "descending"),
            ("score", "descending"),
            ("finding_id", "ascending"),
        ]
        ranked = table.append_column(
            "severity_rank",
            pa.array([schema.SEVERITY_RANK[s] for s in cols["severity"]], pa.int8()),
        )
        return ranked.sort_by(order).drop_columns(["severity_rank"])


# --- what detectors read back ---------------------------------------------------------------------


def period(baseline: pd.DataFrame | pa.Table) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """The time span [first, start) ``detect`` gave a baseline (None, None if not known)."""
    if isinstance(baseline, pa.Table):
        span = (baseline.schema.metadata or {}).get(_PERIOD)
        if not span:
            return None, None
        p0, p1 = span.decode().split("|")
        return pd.Timestamp(p0), pd.Timestamp(p1)
    p0, p1 = baseline.attrs.get("period", (None, None))
    return p0, p1


def to_frame(table: pa.Table) -> pd.DataFrame:
    """Arrow -> pandas with strings as categoricals: 14 days of events stay a few hundred MB."""
    columns = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            col = col.dictionary_encode().unify_dictionaries()
        # A column at a time: the conversion's scratch space is one column's, not the table's.
        columns[name] = col.to_pandas()
    return pd.DataFrame(columns, copy=False)


def finding_id(detector_id: str, key: str, start: datetime | str, end: datetime | str) -> str:
    """A finding's id: a hash of its detector, group key and window, so that detecting a window
    again, on any machine and on more of its events, gives the same ids."""
    start_iso = start if isinstance(start, str) else _iso(start)
    end_iso = end if isinstance(end, str) else _iso(end)
    return hashlib.sha256(
        f"{detector_id}\x1f{key}\x1f{start_iso}\x1f{end_iso}".encode()
    ).hexdigest()[:32]


def _floor_hour(ts: Any) -> datetime:
    return pd.Timestamp(ts).floor("h").to_pydatetime()


def _iso(ts: datetime) -> str:
    return pd.Timestamp(ts).tz_convert(UTC).isoformat()


def _opt_str(value: Any) -> str | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
