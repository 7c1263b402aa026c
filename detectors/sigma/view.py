"""The events a rule's SQL reads: a detection window in DuckDB, plus the derived columns.

``events`` is the window's rows with every lake column and ``foreign_accounts``: the 12-digit
account ids a CloudTrail request's parameters name (a snapshot shared with, a policy's
principal, a role trust) that are neither the event's own account (``recipientAccountId``) nor,
through ``[sigma] account_lookup``, an account of the event's actor or target tenant; comma
separated, or null when there is none. It is computed only when a loaded rule names it.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

FOREIGN = r"""
CREATE TEMP TABLE foreign_accounts AS
SELECT a._tw_row, string_agg(DISTINCT a.acct, ',' ORDER BY a.acct) AS foreign_accounts
FROM (
  SELECT _tw_row, account_id, actor_tenant, target_tenant,
         unnest(regexp_extract_all(json_extract_string(raw, '$.requestParameters'),
                                   '(?:^|[^0-9])([0-9]{12})(?:[^0-9]|$)', 1)) AS acct
  FROM base WHERE source = 'cloudtrail' AND raw LIKE '%requestParameters%'
) a LEFT JOIN accounts m ON m.account = a.acct
WHERE a.acct <> coalesce(a.account_id, '')
  AND (m.tenant IS NULL
       OR m.tenant NOT IN (coalesce(a.actor_tenant, ''), coalesce(a.target_tenant, '')))
GROUP BY a._tw_row
"""


def connect(table: pa.Table, accounts: dict[str, str] | None, *, derive: bool) -> Any:
    """A DuckDB connection whose ``events`` view is ``table`` with the derived columns."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads TO 1")  # the run's own processes already use the cores
    con.register("base", table)
    mapping = accounts or {}
    acc = pa.table(
        {
            "account": pa.array(list(mapping), pa.string()),
            "tenant": pa.array(list(mapping.values()), pa.string()),
        }
    )
    con.register("accounts", acc)
    if derive:
        # Computed once per window (a few rows: the requests that name other accounts), then
        # joined to every rule's reading of the events.
        con.execute(FOREIGN)
        con.execute(
            "CREATE VIEW events AS SELECT * FROM base LEFT JOIN foreign_accounts USING (_tw_row)"
        )
    else:
        con.execute(
            "CREATE VIEW events AS SELECT *, CAST(NULL AS VARCHAR) AS foreign_accounts FROM base"
        )
    return con
