"""Nothing lost, nothing twice, through outages and an operator's controls: PostgreSQL restarted, the
SMTP server gone, send_email paused, a burst rate-limited; each played once under steady load, as
test_faults.py plays each component killed, on a stack of its own so that the two run side by side."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e import faults
from tests.e2e.conftest import MailStack, own_mail_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def outage_stack() -> Iterator[MailStack]:
    with own_mail_stack("worker-outages-") as running:
        yield running


@pytest.mark.parametrize("fault", faults.OUTAGES)
def test_every_job_done_once_after(fault: str, outage_stack: MailStack) -> None:
    outcome = faults.play(outage_stack, fault)
    assert not outcome.duplicates, f"{fault}: messages accepted twice: {outcome.duplicates}"
