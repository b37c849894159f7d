"""Start-up objects are left out of full garbage collections."""

from __future__ import annotations

import gc

from budstikke.gc_tuning import freeze_startup_objects


def test_freeze_moves_live_objects_out_of_collections() -> None:
    try:
        freeze_startup_objects()

        frozen = gc.get_freeze_count()
    finally:
        gc.unfreeze()

    assert frozen > 1000
    assert gc.get_freeze_count() == 0
