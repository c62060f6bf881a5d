"""processd.views.subscribers.Wakeup: a subscriber's wake-up flag with a heartbeat timeout, one timer per
subscriber (re-armed when it fires before the deadline of the latest wait), not one per wait."""

from __future__ import annotations

import asyncio

from processd.views.subscribers import Wakeup


async def test_a_set_flag_returns_at_once_and_a_set_during_the_wait_wakes_it() -> None:
    w = Wakeup()
    w.set()
    assert await w.wait(60) is True and w.is_set()
    w.clear()
    assert not w.is_set()
    waiting = asyncio.create_task(w.wait(60))
    await asyncio.sleep(0)
    assert not waiting.done()
    w.set()
    assert await waiting is True
    w.close()


async def test_an_idle_wait_times_out_and_the_next_one_arms_a_new_timer() -> None:
    w = Wakeup()
    assert await w.wait(0.01) is False
    assert w._timer is None  # fired and not re-armed: nobody waits
    assert await w.wait(0.01) is False


async def test_waits_share_one_timer_whose_deadline_moves_with_each_wait() -> None:
    w = Wakeup()
    loop = asyncio.get_running_loop()
    first = asyncio.create_task(w.wait(0.2))
    await asyncio.sleep(0)
    timer = w._timer
    assert timer is not None
    w.set()
    assert await first is True
    w.clear()
    # A later wait keeps the same timer (no new handle per message); when it fires at the first deadline it is
    # re-armed for this wait's, so the wait still lasts its own timeout, not what was left of the first one.
    await asyncio.sleep(0.1)
    started = loop.time()
    second = asyncio.create_task(w.wait(0.2))
    await asyncio.sleep(0)
    assert w._timer is timer
    assert await second is False
    assert loop.time() - started >= 0.2 - 0.02  # the re-arm margin (10 ms) and the loop's clock resolution
    w.close()
    assert w._timer is None


async def test_a_shorter_wait_replaces_a_later_timer() -> None:
    w = Wakeup()
    long_wait = asyncio.create_task(w.wait(60))
    await asyncio.sleep(0)
    w.set()
    assert await long_wait is True
    w.clear()
    assert await w.wait(0.01) is False  # not 60 s: the timer was moved earlier
    w.close()
