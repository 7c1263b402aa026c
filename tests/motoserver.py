"""moto's server for the tests that speak real HTTP: on 127.0.0.1 only, on a free port.

moto's server finds the service of each request by listing its own package's folders on disk
(``moto.backends.list_of_moto_modules``: a ``stat`` per folder, per request): over a third of
the server's time in the month soak. The list does not change while the process runs, so it is
taken once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from moto.server import ThreadedMotoServer


def threaded_server() -> ThreadedMotoServer:
    """A started moto server on 127.0.0.1; ``get_host_and_port()`` says where."""
    from moto import backends
    from moto.server import ThreadedMotoServer

    if not getattr(backends.list_of_moto_modules, "_taken_once", False):
        modules = tuple(backends.list_of_moto_modules())

        def listed() -> tuple[str, ...]:
            return modules

        listed._taken_once = True  # type: ignore[attr-defined]
        backends.list_of_moto_modules = listed  # type: ignore[assignment]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    return server
