"""The hot-path constructors must equal the definitions they speed up.

Sample ids are stored in every telemetry buffer and used to deduplicate
redeliveries across restarts: ``SampleIds`` must give byte-identical ids to
``make_sample_id``, and ``new_sample`` the same object as ``Sample(...)``.
"""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from twinmesh.adapters import Provenance, Quality, Sample, make_sample_id
from twinmesh.adapters._sample import SampleIds, new_sample

VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.text(max_size=40),
)
TIMES = st.floats(min_value=0, max_value=4e9, allow_nan=False)


@given(kind=st.sampled_from(["mqtt", "opcua"]), source=st.text(max_size=80), ts=TIMES, v=VALUES)
def test_sample_ids_equal_make_sample_id(kind: str, source: str, ts: float, v: object) -> None:
    ids = SampleIds(kind, source)
    assert ids.reading(ts, v) == make_sample_id(kind, source, source_ts=ts, value=v)  # type: ignore[arg-type]


@given(native=st.text(min_size=1, max_size=60))
def test_native_ids_equal_make_sample_id(native: str) -> None:
    assert SampleIds("mqtt", "a/b").native(native) == make_sample_id(
        "mqtt", "a/b", native_id=native
    )


def test_new_sample_equals_the_dataclass() -> None:
    prov = Provenance(adapter="a", source="s")
    args = ("e", "n", 1.5, "bar", 10.0, 11.0, None, Quality.UNCERTAIN, prov, "id")
    fast = new_sample(*args)
    slow = Sample(
        entity="e",
        name="n",
        value=1.5,
        unit="bar",
        source_ts=10.0,
        received_ts=11.0,
        server_ts=None,
        quality=Quality.UNCERTAIN,
        provenance=prov,
        sample_id="id",
    )
    assert fast == slow and hash(fast) == hash(slow)
    assert not math.isnan(fast.source_ts)
