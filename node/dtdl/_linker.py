"""Link parsed Interfaces into a model set: the checks that need more than one model.

Theory of operation. After every document is parsed, Interfaces are joined
with the ones already known (a registry) and we check, in this order:

1. identity: one document per DTMI in the batch (an identical repeat is
   dropped), and element ``@id`` values unique across the set;
2. ``extends``: every DTMI resolves; the graph has no cycle (reported once per
   cycle, with the cycle spelled out); at most 10 levels and 1024 Interfaces
   in each hierarchy (DTDL.v3.md, "Interface");
3. inherited contents: an Interface's own ``contents`` plus everything its
   ancestors declare, names unique across all of them, at most 100,000
   elements in total;
4. Components: the schema resolves to an Interface, and that Interface (with
   what it inherits) holds no Component (DTDL.v3.md, "Component": "a
   Component cannot contain another Component", which also rules out cycles);
5. ``ValueAnnotation.annotates`` names a Property or Telemetry of the same
   Interface, inherited ones included (DTDL.annotation.v1.md);
6. a ``Setpoint`` Command's ``confirmedBy`` names a numeric Telemetry of the
   same Interface, inherited ones included (docs/dtdl-extension.md).

Relationship targets are *not* resolved: a Relationship has "by reference"
semantics and is valid whatever its target (DTDL.v3.md, "Relationship").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from ._errors import Path, Reporter, show
from ._limits import Limits
from ._model import Component, Content, Interface, PrimitiveSchema, Property, Telemetry
from ._parser import ParsedInterface
from ._units import NUMERIC_SCHEMAS

__all__ = ["link"]


class _Linker:
    def __init__(
        self,
        parsed: Sequence[ParsedInterface],
        known: Mapping[str, Interface],
        report: Reporter,
        limits: Limits,
    ) -> None:
        self._report = report
        self._limits = limits
        self._known = known
        self._batch: dict[str, ParsedInterface] = {}
        self._dedupe(parsed)
        self._pool: dict[str, Interface] = dict(known)
        for dtmi, item in self._batch.items():
            self._pool[dtmi] = item.interface
        self._ancestors: dict[str, tuple[str, ...] | None] = {}
        self._depth: dict[str, int] = {}
        self._in_cycle: set[str] = set()

    def _err(
        self, source: str, path: Path, rule: str, expected: str, found: str, what: str
    ) -> None:
        self._report.error(path, rule, expected=expected, found=found, what=what, source=source)

    # 1. identity ---------------------------------------------------------------

    def _dedupe(self, parsed: Sequence[ParsedInterface]) -> None:
        for item in parsed:
            iface = item.interface
            first = self._batch.get(iface.id)
            if first is None:
                self._batch[iface.id] = item
                continue
            if first.interface.canonical_json == iface.canonical_json:
                continue  # the same model given twice: harmless
            self._err(
                iface.source,
                (*item.path, "@id"),
                "id.duplicate",
                "one definition per Interface DTMI",
                f"a second, different definition (first in {first.interface.source})",
                f"{iface.id} is defined twice",
            )
        # Element @ids share one space with Interface DTMIs (DTDL.v3.md, "Digital
        # Twin Model Identifier": every element's identifier is a DTMI).
        owners: dict[str, str] = {dtmi: item.interface.source for dtmi, item in self._batch.items()}
        for item in self._batch.values():
            for element_id, path in item.element_ids:
                if element_id == item.interface.id and path == item.path:
                    continue
                if element_id in owners:
                    self._err(
                        item.interface.source,
                        (*path, "@id"),
                        "id.duplicate",
                        "an @id used by one element only",
                        show(element_id),
                        f"@id already used (in {owners[element_id] or 'this set'})",
                    )
                    continue
                owners[element_id] = item.interface.source

    # 2. extends ----------------------------------------------------------------

    def _resolve_extends(self) -> None:
        for dtmi, item in self._batch.items():
            for index, parent in enumerate(item.interface.extends):
                if parent not in self._pool:
                    self._err(
                        item.interface.source,
                        (*item.path, f"extends[{index}]"),
                        "extends.unresolved",
                        "an Interface defined in the given models or the registry",
                        show(parent),
                        f"{dtmi} extends an unknown Interface",
                    )
        self._find_cycles()

    def _find_cycles(self) -> None:
        # Iterative three-colour DFS over the batch; known models are acyclic already.
        white, grey, black = 0, 1, 2
        colour: dict[str, int] = {}
        reported: set[frozenset[str]] = set()
        for root in self._batch:
            if colour.get(root, white) != white:
                continue
            stack: list[tuple[str, int]] = [(root, 0)]
            trail: list[str] = [root]
            colour[root] = grey
            while stack:
                node, index = stack[-1]
                parents = self._pool[node].extends if node in self._pool else ()
                if index >= len(parents):
                    stack.pop()
                    trail.pop()
                    colour[node] = black
                    continue
                stack[-1] = (node, index + 1)
                parent = parents[index]
                if parent not in self._pool:
                    continue
                state = colour.get(parent, white)
                if state == grey:
                    cycle = trail[trail.index(parent) :]
                    self._in_cycle.update(cycle)
                    key = frozenset(cycle)
                    if key not in reported:
                        reported.add(key)
                        item = self._batch.get(node)
                        source = item.interface.source if item else ""
                        base = item.path if item else (node,)
                        spelled = " -> ".join([*cycle, parent])
                        self._err(
                            source,
                            (*base, f"extends[{index}]"),
                            "extends.cycle",
                            "an extends hierarchy without cycles",
                            spelled,
                            "Interface inherits from itself",
                        )
                elif state == white:
                    colour[parent] = grey
                    stack.append((parent, 0))
                    trail.append(parent)

    def _hierarchy(self, dtmi: str) -> tuple[str, ...] | None:
        """Every ancestor, nearest first, each once; ``None`` if unresolvable.

        Iterative post-order, so a pathological chain cannot exhaust the stack.
        """
        stack = [dtmi]
        on_stack = {dtmi}
        while stack:
            node = stack[-1]
            if node in self._ancestors:
                stack.pop()
                on_stack.discard(node)
                continue
            if node in self._known and node not in self._batch:
                self._ancestors[node] = self._known[node].ancestors
                self._depth[node] = self._known_depth(self._known[node])
                continue
            if node in self._in_cycle or node not in self._pool:
                self._ancestors[node] = None
                continue
            parents = self._pool[node].extends
            pending = [p for p in parents if p not in self._ancestors]
            if any(p in on_stack for p in pending):
                self._ancestors[node] = None  # a cycle the DFS above did not spell out
                continue
            if pending:
                stack.extend(pending)
                on_stack.update(pending)
                continue
            ordered: dict[str, None] = {}
            depth = 0
            resolvable = True
            for parent in parents:
                above = self._ancestors[parent]
                if above is None:
                    resolvable = False
                    break
                ordered[parent] = None
                ordered.update(dict.fromkeys(above))
                depth = max(depth, 1 + self._depth[parent])
            self._ancestors[node] = tuple(ordered) if resolvable else None
            self._depth[node] = depth
        return self._ancestors[dtmi]

    def _known_depth(self, iface: Interface) -> int:
        depth = 0
        for parent in iface.extends:
            if parent in self._known:
                depth = max(depth, 1 + self._known_depth(self._known[parent]))
        return depth

    # 3. inherited contents --------------------------------------------------------

    def _inherit(self, item: ParsedInterface) -> Interface:
        iface = item.interface
        ancestors = self._hierarchy(iface.id)
        if ancestors is None:
            return iface
        source, path = iface.source, item.path
        if self._depth[iface.id] > self._limits.max_extends_depth:
            self._err(
                source,
                (*path, "extends"),
                "extends.depth",
                f"at most {self._limits.max_extends_depth} levels of extends",
                f"{self._depth[iface.id]} levels",
                "inheritance too deep",
            )
        if len(ancestors) > self._limits.max_extends_count:
            self._err(
                source,
                (*path, "extends"),
                "extends.count",
                f"at most {self._limits.max_extends_count} Interfaces in the hierarchy",
                f"{len(ancestors)}",
                "inheritance too wide",
            )
        contents: list[Content] = list(iface.contents)
        by_name: dict[str, Content] = {c.name: c for c in contents}
        total = iface.element_count
        for ancestor_id in ancestors:
            ancestor = self._pool[ancestor_id]
            total += ancestor.element_count
            for content in ancestor.contents:
                other = by_name.get(content.name)
                if other is None:
                    by_name[content.name] = content
                    contents.append(content)
                elif other is not content:
                    self._err(
                        source,
                        (*path, "extends"),
                        "name.duplicate",
                        "content names unique across the Interface and what it extends",
                        f"{content.name!r} in both {other.defined_in or iface.id} "
                        f"and {ancestor_id}",
                        "inherited name clash",
                    )
        if total > self._limits.max_elements:
            self._err(
                source,
                (*path, "contents"),
                "contents.count",
                f"at most {self._limits.max_elements} elements in the contents "
                "hierarchy, extends included",
                f"{total}",
                "Interface too big",
            )
        return dataclasses.replace(iface, all_contents=tuple(contents), ancestors=ancestors)

    # 4./5. components and annotations ---------------------------------------------

    def _check_components(
        self, item: ParsedInterface, iface: Interface, linked: Mapping[str, Interface]
    ) -> None:
        for index, content in enumerate(iface.contents):
            path = (*item.path, f'contents[{index}] (name "{content.name}")', "schema")
            if not isinstance(content, Component):
                continue
            target = linked.get(content.schema) or self._pool.get(content.schema)
            if target is None:
                self._err(
                    iface.source,
                    path,
                    "component.unresolved",
                    "an Interface defined in the given models or the registry",
                    show(content.schema),
                    "Component schema not found",
                )
                continue
            nested = [c.name for c in target.all_contents if isinstance(c, Component)]
            if nested:
                self._err(
                    iface.source,
                    path,
                    "component.nested",
                    "an Interface without Components",
                    f"{target.id} with Component {nested[0]!r}",
                    "a Component cannot contain another Component",
                )

    def _check_annotations(self, item: ParsedInterface, iface: Interface) -> None:
        values = {c.name for c in iface.all_contents if isinstance(c, Property | Telemetry)}
        for index, content in enumerate(iface.contents):
            annotates = getattr(content, "annotates", None)
            if annotates is None or (annotates in values and annotates != content.name):
                continue
            self._err(
                iface.source,
                (*item.path, f'contents[{index}] (name "{content.name}")', "annotates"),
                "annotation.target",
                "the name of another Property or Telemetry of this Interface",
                show(annotates),
                "ValueAnnotation annotates nothing",
            )

    def _check_setpoints(self, item: ParsedInterface, iface: Interface) -> None:
        numeric = {
            c.name
            for c in iface.all_contents
            if isinstance(c, Telemetry)
            and isinstance(c.schema, PrimitiveSchema)
            and c.schema.name in NUMERIC_SCHEMAS
        }
        for index, content in enumerate(iface.contents):
            setpoint = getattr(content, "setpoint", None)
            if setpoint is None or setpoint.confirmed_by in numeric:
                continue
            self._err(
                iface.source,
                (*item.path, f'contents[{index}] (name "{content.name}")', "confirmedBy"),
                "twinmesh.setpoint",
                "the name of a numeric Telemetry of this Interface",
                show(setpoint.confirmed_by),
                "nothing confirms the Setpoint command",
            )

    def _check_alarm_limits(self, item: ParsedInterface, iface: Interface) -> None:
        numeric = {
            c.name: c
            for c in iface.all_contents
            if isinstance(c, Telemetry)
            and isinstance(c.schema, PrimitiveSchema)
            and c.schema.name in NUMERIC_SCHEMAS
        }
        for index, content in enumerate(iface.contents):
            limit = getattr(content, "alarm_limit", None)
            if limit is None:
                continue
            where = (*item.path, f'contents[{index}] (name "{content.name}")')
            telemetry = numeric.get(limit.limits)
            if telemetry is None:
                self._err(
                    iface.source,
                    (*where, "limits"),
                    "twinmesh.alarm-limit",
                    "the name of a numeric Telemetry of this Interface",
                    show(limit.limits),
                    "the AlarmLimit limits nothing",
                )
            elif content.unit and telemetry.unit and content.unit != telemetry.unit:
                # A limit in degC on a reading in K would alarm at the wrong place.
                self._err(
                    iface.source,
                    (*where, "unit"),
                    "twinmesh.alarm-limit",
                    f"the unit of {telemetry.name} ({telemetry.unit})",
                    show(content.unit),
                    "a limit and its reading disagree on the unit",
                )

    # ------------------------------------------------------------------------------

    def run(self) -> list[Interface]:
        self._resolve_extends()
        linked: dict[str, Interface] = {}
        for dtmi, item in self._batch.items():
            linked[dtmi] = self._inherit(item)
        for dtmi, item in self._batch.items():
            self._check_components(item, linked[dtmi], linked)
            self._check_annotations(item, linked[dtmi])
            self._check_setpoints(item, linked[dtmi])
            self._check_alarm_limits(item, linked[dtmi])
        return list(linked.values())


def link(
    parsed: Sequence[ParsedInterface],
    *,
    known: Mapping[str, Interface],
    report: Reporter,
    limits: Limits,
) -> list[Interface]:
    """Resolve ``extends`` and Components of ``parsed`` against itself and ``known``."""
    return _Linker(parsed, known, report, limits).run()
