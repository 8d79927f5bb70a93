"""What every request handler can reach: the runtime the app's lifespan started."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from hark.principal import Principal
from hark.runtime import ServiceState

__all__ = ["Principal", "ReadSession", "ServiceState", "State", "WriteSession", "get_state"]


async def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.hark
    return state


def _read_session(request: Request) -> Iterator[Session]:
    state: ServiceState = request.app.state.hark
    with state.db.session() as session:
        yield session


def _write_session(request: Request) -> Iterator[Session]:
    state: ServiceState = request.app.state.hark
    with state.db.session(write=True) as session:
        yield session


# The request's unit of work: services change and flush, and the session commits when
# the handler returns, before the response is sent (so a client that reads right after
# sees the change); actions registered to run after the commit go then too. A raised
# error rolls everything back.
ReadSession = Annotated[Session, Depends(_read_session, scope="function")]
WriteSession = Annotated[Session, Depends(_write_session, scope="function")]
State = Annotated[ServiceState, Depends(get_state)]
