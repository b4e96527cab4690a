"""What the DTDL models say about each telemetry tag, for the quality checks.

A tag is ``(entity, telemetry name)``. Its :class:`TagSpec` comes from the
Telemetry element of the asset's model:

* ``unit``: the symbol samples are normalised to (``dtdl.unit_symbol``: an
  ExpectedRange ``unitSymbol`` wins, else the QuantitativeTypes unit's symbol);
* ``minimum`` / ``maximum``: the ExpectedRange bounds, in that unit;
* ``expected_interval``: the asset's ``sample_interval`` from the node config
  (a model describes a kind of machine, not how often one plant polls it);
* ``varies``: numeric telemetry is expected to move (sensor noise alone makes
  an analog reading change), so a run of identical values is a STUCK sensor;
  booleans, strings and enums hold values legitimately, as do the tags the
  asset lists as ``steady``.

An asset whose model is unknown, or a model without telemetry, is an error at
start-up, not a silent lack of checks.
"""

from __future__ import annotations

from collections.abc import Sequence

from twinmesh.crdt import LocalProtocolError

from ..dtdl import ModelRegistry, PrimitiveSchema, unit_symbol
from ._quality import TagSpec
from ._settings import AssetSpec, TelemetryConfigError, TelemetrySettings

__all__ = ["check_asset_ids", "tag_specs"]

_NUMERIC = frozenset({"double", "float", "integer", "long"})


def tag_specs(
    assets: Sequence[AssetSpec], registry: ModelRegistry
) -> dict[tuple[str, str], TagSpec]:
    specs: dict[tuple[str, str], TagSpec] = {}
    for asset in assets:
        try:
            model = registry.get(asset.model)
        except LocalProtocolError as exc:
            raise TelemetryConfigError(f"asset {asset.entity}: {exc.reason}") from None
        names = {t.name for t in model.telemetries}
        unknown = sorted(set(asset.steady) - names)
        if unknown:
            raise TelemetryConfigError(
                f"asset {asset.entity}: steady names telemetry {model.id} lacks: "
                + ", ".join(unknown)
            )
        for tel in model.telemetries:
            numeric = isinstance(tel.schema, PrimitiveSchema) and tel.schema.name in _NUMERIC
            rng = tel.expected_range
            specs[(asset.entity, tel.name)] = TagSpec(
                unit=unit_symbol(tel) if numeric else None,
                minimum=rng.minimum if rng and numeric else None,
                maximum=rng.maximum if rng and numeric else None,
                expected_interval=asset.sample_interval,
                varies=numeric and tel.name not in asset.steady,
            )
    return specs


def check_asset_ids(settings: TelemetrySettings, *, home: str) -> None:
    """Assets whose twins this node creates must have ids it may create (``_entity_ids``).

    A plant's asset list names its site (``plant-a/line-1/motor-1``); fed to
    another node, its twins would be created there with the wrong home.
    """
    if not settings.create_twins:
        return
    from .._entity_ids import EntityIdError, check_entity_id

    for asset in settings.assets:
        try:
            check_entity_id(asset.entity, home=home)
        except EntityIdError as exc:
            raise TelemetryConfigError(
                f"asset {asset.entity}: {exc.reason} (or set telemetry.create_twins = false)"
            ) from None
