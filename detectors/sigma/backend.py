"""SQL for Sigma rules over the lake's events: a small pySigma backend with two dialects.

DuckDB is what the ``sigma`` detector runs (over a detection window's events); Athena (Trino) is
what ``tenantwatch sigma show --athena`` prints for the same rule over the Glue ``events`` table.

Why a backend of our own rather than a published one: the SQL must read two kinds of field, the
lake's columns (``eventName`` is the ``action`` column) and JSON paths into ``raw`` (the original
record, secrets fingerprinted: ``userIdentity.type``, ``requestParameters.bucketName``), and it
must do so in both dialects with Sigma's semantics (case-insensitive matching, a missing field
never matching, ``not`` matching a missing field). The published DuckDB backend pins pySigma
below 2 and knows neither JSON columns nor Athena; the SQLite backend's string escaping and JSON
functions are SQLite's. The base classes (``TextQueryBackend``) do the parsing, the condition
tree, the modifiers, placeholders, CIDR expansion and correlation templates; this module only
says how each piece is written in SQL.

Every comparison is wrapped in ``coalesce(..., false)``: SQL's NULL would make ``not x = 'a'``
drop the rows where ``x`` is missing, where Sigma keeps them.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from sigma.conditions import ConditionFieldEqualsValueExpression
from sigma.conversion.base import TextQueryBackend
from sigma.conversion.state import ConversionState
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaFeatureNotSupportedByBackendError
from sigma.rule import SigmaRule
from sigma.types import (
    CompareOperators,
    SigmaBool,
    SigmaCasedString,
    SigmaCompareExpression,
    SigmaFieldReference,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SpecialChars,
)

from detectors.sigma.fields import LAKE_COLUMNS, json_path_parts, source_of

# The relation a query reads: the detector registers the window's events under this name.
EVENTS = "events"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def sql_string(value: str) -> str:
    """A SQL string literal (standard SQL: a quote is doubled, nothing else is special)."""
    return "'" + value.replace("'", "''") + "'"


def like_pattern(value: SigmaString) -> str:
    """``value`` as a LIKE pattern with ``\\`` as its escape: Sigma's ``*``/``?`` become
    ``%``/``_``, a literal ``%``, ``_`` or ``\\`` is escaped."""
    out: list[str] = []
    for part in value.s:
        if part == SpecialChars.WILDCARD_MULTI:
            out.append("%")
        elif part == SpecialChars.WILDCARD_SINGLE:
            out.append("_")
        elif isinstance(part, str):
            out.append(re.sub(r"([\\%_])", r"\\\1", part))
        else:  # a placeholder left in the value: the pipeline should have resolved it
            raise SigmaFeatureNotSupportedByBackendError(f"unresolved placeholder {part}")
    return "".join(out)


class LakeSQLBackend(TextQueryBackend):
    """Sigma rules as DuckDB SQL over the lake's ``events``."""

    name: ClassVar[str] = "tenantwatch lake SQL (DuckDB)"
    formats: ClassVar[dict[str, str]] = {"default": "a SELECT over the window's events"}
    requires_pipeline: ClassVar[bool] = False

    group_expression: ClassVar[str] = "({expr})"
    or_token: ClassVar[str] = "OR"  # noqa: S105
    and_token: ClassVar[str] = "AND"  # noqa: S105
    not_token: ClassVar[str] = "NOT"  # noqa: S105
    eq_token: ClassVar[str] = " = "  # noqa: S105
    str_quote: ClassVar[str] = "'"
    escape_char: ClassVar[str] = "'"
    wildcard_multi: ClassVar[str] = "%"
    wildcard_single: ClassVar[str] = "_"
    # CIDR values are expanded by the base class into prefixes (``10.0.*``): no INET type needed.
    cidr_expression: ClassVar[str | None] = None
    field_null_expression: ClassVar[str] = "({field} IS NULL)"
    field_exists_expression: ClassVar[str] = "({field} IS NOT NULL)"
    field_not_exists_expression: ClassVar[str] = "({field} IS NULL)"
    compare_op_expression: ClassVar[str] = (
        "coalesce(TRY_CAST({field} AS DOUBLE) {operator} {value}, false)"
    )
    compare_operators: ClassVar[dict[CompareOperators, str]] = {
        CompareOperators.LT: "<",
        CompareOperators.LTE: "<=",
        CompareOperators.GT: ">",
        CompareOperators.GTE: ">=",
        CompareOperators.NEQ: "<>",
    }
    # Keywords (values without a field) search the whole original record.
    unbound_value_str_expression: ClassVar[str] = "{value}"

    # The JSON function reading a path of ``raw`` as text (objects and arrays as their JSON).
    json_text: ClassVar[str] = "json_extract_string(raw, {path})"
    regex_function: ClassVar[str] = "regexp_matches({field}, {regex})"
    dialect: ClassVar[str] = "duckdb"

    # --- correlations: window functions over the rules' matches ------------------------------
    # Each referenced rule's matches are tagged with its name; a group (``group-by``) qualifies
    # when, at one of its events, the events (or distinct values, or rules) of that group in the
    # ``timespan`` before it meet the condition. The query returns every match of a qualifying
    # group, so the finding's evidence is the events that made it.
    correlation_methods: ClassVar[dict[str, str]] = {"default": "window functions over matches"}
    default_correlation_method: ClassVar[str] = "default"
    default_correlation_query: ClassVar[dict[str, str]] = {
        "default": (
            "SELECT * EXCLUDE (sigma_n, sigma_hit) FROM (SELECT *, "
            "bool_or({condition}) OVER (PARTITION BY {groupby}) AS sigma_hit FROM (SELECT *, "
            "concat_ws('|', {groupby}) AS sigma_group, "
            "{aggregate} OVER (PARTITION BY {groupby} ORDER BY event_time RANGE BETWEEN "
            "INTERVAL {timespan} SECOND PRECEDING AND CURRENT ROW) AS sigma_n FROM ({search}))) "
            "WHERE sigma_hit"
        )
    }
    event_count_aggregation_expression: ClassVar[dict[str, str]] = {"default": "count(*)"}
    value_count_aggregation_expression: ClassVar[dict[str, str]] = {
        "default": "count(DISTINCT {field})"
    }
    temporal_aggregation_expression: ClassVar[dict[str, str]] = {
        "default": "count(DISTINCT sigma_rule)"
    }
    event_count_condition_expression: ClassVar[dict[str, str]] = {"default": "sigma_n {op} {count}"}
    value_count_condition_expression: ClassVar[dict[str, str]] = {"default": "sigma_n {op} {count}"}
    temporal_condition_expression: ClassVar[dict[str, str]] = {"default": "sigma_n {op} {count}"}
    groupby_expression: ClassVar[dict[str, str]] = {"default": "{fields}"}
    groupby_field_expression: ClassVar[dict[str, str]] = {"default": "{field}"}
    groupby_field_expression_joiner: ClassVar[dict[str, str]] = {"default": ", "}
    groupby_expression_nofield: ClassVar[dict[str, str]] = {"default": "NULL"}
    timespan_seconds: ClassVar[bool] = True
    referenced_rules_expression: ClassVar[dict[str, str]] = {"default": "{ruleid}"}
    referenced_rules_expression_joiner: ClassVar[dict[str, str]] = {"default": ", "}

    def convert_correlation_search(self, rule: SigmaCorrelationRule, **kwargs: Any) -> str:
        """The matches of every rule the correlation names, each tagged with its name (or id)
        in ``sigma_rule``, over the events of its own log source."""
        if rule.aliases and rule.aliases.aliases:
            raise SigmaFeatureNotSupportedByBackendError(
                "correlation field aliases", source=rule.source
            )
        parts = []
        for ref in rule.referenced_rules:
            base = ref.rule
            assert isinstance(base, SigmaRule)
            name = str(base.name or base.id)
            for query in base.get_conversion_result():
                where = self.where(base, str(query))
                tag = sql_string(name)
                parts.append(f"SELECT *, {tag} AS sigma_rule FROM {self.relation()} WHERE {where}")  # noqa: S608
        return " UNION ALL ".join(parts)

    # --- fields -------------------------------------------------------------------------------

    def escape_and_quote_field(self, field_name: str) -> str:
        """A lake column as a quoted identifier; any other field as JSON text from ``raw``."""
        if field_name in LAKE_COLUMNS:
            return f'"{field_name}"'
        return self.json_text.format(path=sql_string(self.json_path(field_name)))

    def json_path(self, field_name: str) -> str:
        parts = json_path_parts(field_name)
        return "$" + "".join(f".{p}" if _IDENT.match(p) else f'."{p}"' for p in parts)

    # --- values -------------------------------------------------------------------------------

    def _text(self, field: str, cased: bool) -> str:
        text = self.escape_and_quote_field(field)
        if field in LAKE_COLUMNS and field in _NON_TEXT:
            text = f"CAST({text} AS VARCHAR)"
        return text if cased else f"lower({text})"

    def _match(self, field: str, value: SigmaString, cased: bool) -> str:
        text = self._text(field, cased)
        if not value.contains_special():
            plain = str(value)
            return f"coalesce({text} = {sql_string(plain if cased else plain.lower())}, false)"
        pattern = like_pattern(value)
        pattern = pattern if cased else pattern.lower()
        return f"coalesce({text} LIKE {sql_string(pattern)} ESCAPE '\\', false)"

    def convert_condition_field_eq_val_str(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        assert isinstance(cond.value, SigmaString)
        return self._match(cond.field or "", cond.value, cased=False)

    def convert_condition_field_eq_val_str_case_sensitive(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        assert isinstance(cond.value, SigmaCasedString | SigmaString)
        return self._match(cond.field or "", cond.value, cased=True)

    def convert_condition_field_eq_val_num(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        assert isinstance(cond.value, SigmaNumber)
        field = self.escape_and_quote_field(cond.field or "")
        return f"coalesce(TRY_CAST({field} AS DOUBLE) = {cond.value.number}, false)"

    def convert_condition_field_eq_val_bool(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        assert isinstance(cond.value, SigmaBool)
        text = self._text(cond.field or "", cased=False)
        return f"coalesce({text} = {sql_string(str(cond.value.boolean).lower())}, false)"

    def convert_condition_field_eq_val_re(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        assert isinstance(cond.value, SigmaRegularExpression)
        flags = {
            SigmaRegularExpressionFlag.IGNORECASE: "i",
            SigmaRegularExpressionFlag.MULTILINE: "m",
            SigmaRegularExpressionFlag.DOTALL: "s",
        }
        prefix = "".join(sorted(flags[f] for f in cond.value.flags))
        regex = (f"(?{prefix})" if prefix else "") + str(cond.value.regexp)
        field = self._text(cond.field or "", cased=True)
        test = self.regex_function.format(field=field, regex=sql_string(regex))
        return f"coalesce({test}, false)"

    def convert_condition_field_eq_field(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        assert isinstance(cond.value, SigmaFieldReference)
        if cond.value.starts_with or cond.value.ends_with:
            raise SigmaFeatureNotSupportedByBackendError(
                "fieldref with startswith/endswith/contains", source=cond.source
            )
        left = self._text(cond.field or "", cased=False)
        right = self._text(cond.value.field, cased=False)
        return f"coalesce({left} = {right}, false)"

    def convert_condition_val_str(self, cond: Any, state: ConversionState) -> str:
        """A keyword: the value anywhere in the original record (as a substring)."""
        value = cond.value
        assert isinstance(value, SigmaString)
        pattern = "%" + like_pattern(value).lower() + "%"
        return f"coalesce(lower(raw) LIKE {sql_string(pattern)} ESCAPE '\\', false)"

    def convert_condition_val_num(self, cond: Any, state: ConversionState) -> str:
        pattern = f"%{cond.value.number}%"
        return f"coalesce(raw LIKE {sql_string(pattern)}, false)"

    def convert_condition_val_re(self, cond: Any, state: ConversionState) -> str:
        test = self.regex_function.format(field="raw", regex=sql_string(str(cond.value.regexp)))
        return f"coalesce({test}, false)"

    def convert_condition_field_compare_op_val(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        assert isinstance(cond.value, SigmaCompareExpression)
        field = self.escape_and_quote_field(cond.field or "")
        op = self.compare_operators[cond.value.op]
        return self.compare_op_expression.format(field=field, operator=op, value=cond.value.number)

    def convert_condition_field_eq_val_timestamp_part(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        raise SigmaFeatureNotSupportedByBackendError(
            "timestamp-part modifiers (minute, hour, day ...)", source=cond.source
        )

    # --- the whole query ----------------------------------------------------------------------

    def finalize_query_default(
        self, rule: SigmaRule | SigmaCorrelationRule, query: str, index: int, state: ConversionState
    ) -> str:
        if isinstance(rule, SigmaCorrelationRule):
            return query
        return f"SELECT * FROM {self.relation()} WHERE {self.where(rule, query)}"  # noqa: S608

    def where(self, rule: SigmaRule, query: str) -> str:
        """The rule's log source and its condition."""
        source = f"source = {sql_string(source_of(rule.logsource))}"
        return f"{source} AND ({query})" if query else source

    def relation(self) -> str:
        return EVENTS


class AthenaSQLBackend(LakeSQLBackend):
    """The same queries in Athena's (Trino's) SQL over the Glue table ``events``: what an analyst
    runs by hand. Partition columns bound the scan; ``{start}``/``{end}`` are left for them."""

    name: ClassVar[str] = "tenantwatch lake SQL (Athena)"
    json_text: ClassVar[str] = (
        "coalesce(json_extract_scalar(raw, {path}), json_format(json_extract(raw, {path})))"
    )
    regex_function: ClassVar[str] = "regexp_like({field}, {regex})"
    dialect: ClassVar[str] = "athena"

    # Trino has no DISTINCT in window aggregates: value_count and temporal correlations are
    # DuckDB's only (``sigma show`` says so).
    def convert_correlation_value_count_rule(self, *args: Any, **kwargs: Any) -> Any:
        raise SigmaFeatureNotSupportedByBackendError(_NO_DISTINCT.format(kind="value_count"))

    def convert_correlation_temporal_rule(self, *args: Any, **kwargs: Any) -> Any:
        raise SigmaFeatureNotSupportedByBackendError(_NO_DISTINCT.format(kind="temporal"))

    default_correlation_query: ClassVar[dict[str, str]] = {
        "default": (
            "SELECT * FROM (SELECT *, "
            "bool_or({condition}) OVER (PARTITION BY {groupby}) AS sigma_hit FROM (SELECT *, "
            "concat_ws('|', {groupby}) AS sigma_group, "
            "{aggregate} OVER (PARTITION BY {groupby} ORDER BY event_time RANGE BETWEEN "
            "INTERVAL '{timespan}' SECOND PRECEDING AND CURRENT ROW) AS sigma_n FROM ({search}))) "
            "WHERE sigma_hit"
        )
    }

    def json_path(self, field_name: str) -> str:
        parts = json_path_parts(field_name)
        return "$" + "".join(f".{p}" if _IDENT.match(p) else f'["{p}"]' for p in parts)

    def relation(self) -> str:
        return "events"


_NO_DISTINCT = (
    "{kind} correlations count distinct values over a sliding window, which Athena's SQL (Trino)"
    " has no window function for"
)

# Lake columns that are not text: compared as text after a cast.
_NON_TEXT = frozenset({"event_time", "status_code"})
