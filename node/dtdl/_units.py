"""Semantic types and units of the DTDL QuantitativeTypes extension, version 1.

In DTDL v3 semantic types are not core language: a model uses them by adding
the context ``dtmi:dtdl:extension:quantitativeTypes;1`` after the DTDL context
(DTDL.Extensions.md). An element co-typed with a semantic type, e.g.
``"@type": ["Telemetry", "Temperature"]``, must have a ``unit`` from that
semantic type's unit type and a numeric ``schema`` (DTDL.quantitativeTypes.v1.md,
"Semantic types and units"). The tables below are that document's chart.

Note the chart is not one-to-one: ``Humidity`` uses ``DensityUnit``,
``Luminosity`` uses ``PowerUnit``, and there is no ``millimetrePerSecond``
among the velocity units.
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = [
    "NUMERIC_SCHEMAS",
    "QUANTITATIVE_TYPES_CONTEXT",
    "SEMANTIC_TYPES",
    "SEMANTIC_TYPE_HOSTS",
    "UNIT_SYMBOLS",
    "UNIT_TYPES",
    "allowed_units",
]

QUANTITATIVE_TYPES_CONTEXT = "dtmi:dtdl:extension:quantitativeTypes;1"

#: The numeric primitive schemas of DTDL v3 (``NumericSchema`` in the v3 metamodel).
NUMERIC_SCHEMAS = frozenset({"double", "float", "integer", "long"})

#: Element classes a semantic type may co-type.
SEMANTIC_TYPE_HOSTS = frozenset(
    {"CommandRequest", "CommandResponse", "Field", "MapValue", "Property", "Telemetry"}
)

_POWER = (
    "britishThermalUnitPerHour gigajoulePerHour gigawatt horsepower joulePerHour "
    "joulePerSecond kiloBritishThermalUnitPerHour kilojoulePerHour kilojoulePerSecond "
    "kilowatt kilowattHourPerYear megajoulePerHour megawatt microwatt milliwatt "
    "tonOfRefrigeration watt"
)
_LENGTH = (
    "astronomicalUnit centimetre foot inch kilometre metre micrometre mile millimetre "
    "nanometre nauticalMile"
)
_ANGLE = "degreeOfArc minuteOfArc radian secondOfArc turn"
_UNITLESS = "partsPerBillion partsPerMillion partsPerQuadrillion partsPerTrillion percent unity"
_DENSITY = "gramPerCubicMetre kilogramPerCubicMetre microgramPerCubicMetre milligramPerCubicMetre"
_FORCE = "newton ounce pound ton"

_UNIT_TYPES_TEXT: dict[str, str] = {
    "AccelerationUnit": "centimetrePerSecondSquared gForce metrePerSecondSquared",
    "AngleUnit": _ANGLE,
    "AngularAccelerationUnit": "radianPerSecondSquared",
    "AngularVelocityUnit": (
        "degreePerSecond radianPerSecond revolutionPerMinute revolutionPerSecond"
    ),
    "ApparentEnergyUnit": (
        "gigavoltAmpereHour kilovoltAmpereHour megavoltAmpereHour voltAmpereHour"
    ),
    "ApparentPowerUnit": (
        "gigavoltAmpere kilovoltAmpere megavoltAmpere millivoltAmpere voltAmpere"
    ),
    "AreaUnit": (
        "acre hectare squareCentimetre squareFoot squareInch squareKilometre squareMetre "
        "squareMillimetre"
    ),
    "CapacitanceUnit": "farad microfarad millifarad nanofarad picofarad",
    "ChargeUnit": "ampereHour coulomb milliampereHour",
    "CurrentUnit": "ampere kiloampere microampere milliampere",
    "DataRateUnit": (
        "bitPerSecond bytePerSecond exbibitPerSecond exbibytePerSecond gibibitPerSecond "
        "gibibytePerSecond kibibitPerSecond kibibytePerSecond mebibitPerSecond "
        "mebibytePerSecond tebibitPerSecond tebibytePerSecond yobibitPerSecond "
        "yobibytePerSecond zebibitPerSecond zebibytePerSecond"
    ),
    "DataSizeUnit": (
        "bit byte exbibit exbibyte gibibit gibibyte kibibit kibibyte mebibit mebibyte "
        "tebibit tebibyte yobibit yobibyte zebibit zebibyte"
    ),
    "DensityUnit": _DENSITY,
    "EnergyUnit": (
        "britishThermalUnit electronvolt gigajoule gigawattHour joule "
        "kiloBritishThermalUnit kilojoule kilowattHour megaelectronvolt megajoule "
        "megawattHour milliwattHour terawattHour wattHour"
    ),
    "ForceUnit": _FORCE,
    "FrequencyUnit": "gigahertz hertz kilohertz megahertz millihertz",
    "IlluminanceUnit": "footcandle lux",
    "InductanceUnit": "henry microhenry millihenry",
    "IonizingRadiationDoseUnit": ("gray microgray microsievert milligray millisievert sievert"),
    "IrradianceUnit": "wattPerSquareMetre",
    "LengthUnit": _LENGTH,
    "LuminanceUnit": "candelaPerSquareMetre",
    "LuminousFluxUnit": "lumen",
    "LuminousIntensityUnit": "candela",
    "MagneticFluxUnit": "maxwell weber",
    "MagneticInductionUnit": "gauss tesla",
    "MassUnit": "gram kilogram massPound microgram milligram slug tonne",
    "MassFlowRateUnit": (
        "gramPerHour gramPerSecond kilogramPerHour kilogramPerSecond massPoundPerHour"
    ),
    "PowerUnit": _POWER,
    "PressureUnit": (
        "bar decapascal hectopascal inchesOfMercury inchesOfWater kilopascal millibar "
        "millimetresOfMercury pascal poundPerSquareInch"
    ),
    "RadioactivityUnit": "becquerel gigabecquerel kilobecquerel megabecquerel",
    "ReactiveEnergyUnit": (
        "gigavoltAmpereReactiveHour kilovoltAmpereReactiveHour "
        "megavoltAmpereReactiveHour voltAmpereReactiveHour"
    ),
    "ReactivePowerUnit": (
        "gigavoltAmpereReactive kilovoltAmpereReactive megavoltAmpereReactive "
        "millivoltAmpereReactive voltAmpereReactive"
    ),
    "ResistanceUnit": "kiloohm megaohm milliohm ohm",
    "SoundPressureUnit": "bel decibel",
    "TemperatureUnit": "degreeCelsius degreeFahrenheit kelvin",
    "TimeUnit": "day hour microsecond millisecond minute nanosecond second year",
    "TorqueUnit": "newtonMetre",
    "Unitless": _UNITLESS,
    "VelocityUnit": (
        "centimetrePerSecond kilometrePerHour kilometrePerSecond knot metrePerHour "
        "metrePerSecond milePerHour milePerSecond"
    ),
    "VoltageUnit": "kilovolt megavolt microvolt millivolt volt",
    "VolumeUnit": (
        "cubicCentimetre cubicFoot cubicInch cubicMetre fluidOunce gallon litre millilitre"
    ),
    "VolumeFlowRateUnit": (
        "cubicFootPerMinute cubicMetrePerHour cubicMetrePerMinute cubicMetrePerSecond "
        "gallonPerHour gallonPerMinute litrePerHour litrePerMinute litrePerSecond "
        "millilitrePerHour millilitrePerMinute millilitrePerSecond"
    ),
}

#: Unit type -> its units.
UNIT_TYPES: MappingProxyType[str, frozenset[str]] = MappingProxyType(
    {name: frozenset(units.split()) for name, units in _UNIT_TYPES_TEXT.items()}
)

#: Semantic type -> the unit type its ``unit`` must come from.
SEMANTIC_TYPES: MappingProxyType[str, str] = MappingProxyType(
    {
        "Acceleration": "AccelerationUnit",
        "Angle": "AngleUnit",
        "AngularAcceleration": "AngularAccelerationUnit",
        "AngularVelocity": "AngularVelocityUnit",
        "ApparentEnergy": "ApparentEnergyUnit",
        "ApparentPower": "ApparentPowerUnit",
        "Area": "AreaUnit",
        "Capacitance": "CapacitanceUnit",
        "Concentration": "Unitless",
        "Current": "CurrentUnit",
        "DataRate": "DataRateUnit",
        "DataSize": "DataSizeUnit",
        "Density": "DensityUnit",
        "Distance": "LengthUnit",
        "ElectricCharge": "ChargeUnit",
        "Energy": "EnergyUnit",
        "EnergyRate": "PowerUnit",
        "Force": "ForceUnit",
        "Frequency": "FrequencyUnit",
        "Humidity": "DensityUnit",
        "Illuminance": "IlluminanceUnit",
        "Inductance": "InductanceUnit",
        "IonizingRadiationDose": "IonizingRadiationDoseUnit",
        "Irradiance": "IrradianceUnit",
        "Latitude": "AngleUnit",
        "Length": "LengthUnit",
        "Longitude": "AngleUnit",
        "Luminance": "LuminanceUnit",
        "Luminosity": "PowerUnit",
        "LuminousFlux": "LuminousFluxUnit",
        "LuminousIntensity": "LuminousIntensityUnit",
        "MagneticFlux": "MagneticFluxUnit",
        "MagneticInduction": "MagneticInductionUnit",
        "Mass": "MassUnit",
        "MassFlowRate": "MassFlowRateUnit",
        "Power": "PowerUnit",
        "Pressure": "PressureUnit",
        "Radioactivity": "RadioactivityUnit",
        "ReactiveEnergy": "ReactiveEnergyUnit",
        "ReactivePower": "ReactivePowerUnit",
        "RelativeDensity": "Unitless",
        "RelativeHumidity": "Unitless",
        "Resistance": "ResistanceUnit",
        "SoundPressure": "SoundPressureUnit",
        "Temperature": "TemperatureUnit",
        "Thrust": "ForceUnit",
        "TimeSpan": "TimeUnit",
        "Torque": "TorqueUnit",
        "Velocity": "VelocityUnit",
        "Voltage": "VoltageUnit",
        "Volume": "VolumeUnit",
        "VolumeFlowRate": "VolumeFlowRateUnit",
    }
)


def allowed_units(semantic_type: str) -> frozenset[str]:
    """The units a ``unit`` may name for ``semantic_type`` (empty if unknown)."""
    unit_type = SEMANTIC_TYPES.get(semantic_type)
    return UNIT_TYPES[unit_type] if unit_type else frozenset()


#: Conventional symbols of common QuantitativeTypes units, spelled the way plant
#: data and twinmesh's unit conversion table spell them (``°C``, ``rpm``, ``m3/h``).
#: Units not listed have no agreed short symbol here; use the DTDL name.
UNIT_SYMBOLS: MappingProxyType[str, str] = MappingProxyType(
    {
        "degreeCelsius": "°C",
        "degreeFahrenheit": "°F",
        "kelvin": "K",
        "pascal": "Pa",
        "hectopascal": "hPa",
        "kilopascal": "kPa",
        "millibar": "mbar",
        "bar": "bar",
        "poundPerSquareInch": "psi",
        "hertz": "Hz",
        "kilohertz": "kHz",
        "revolutionPerMinute": "rpm",
        "metrePerSecond": "m/s",
        "kilometrePerHour": "km/h",
        "metre": "m",
        "centimetre": "cm",
        "millimetre": "mm",
        "micrometre": "µm",
        "inch": "in",
        "foot": "ft",
        "metrePerSecondSquared": "m/s²",
        "gForce": "g",
        "cubicMetrePerSecond": "m3/s",
        "cubicMetrePerHour": "m3/h",
        "litrePerSecond": "L/s",
        "litrePerMinute": "L/min",
        "gallonPerMinute": "gpm",
        "watt": "W",
        "kilowatt": "kW",
        "megawatt": "MW",
        "horsepower": "hp",
        "joule": "J",
        "kilojoule": "kJ",
        "wattHour": "Wh",
        "kilowattHour": "kWh",
        "megawattHour": "MWh",
        "ampere": "A",
        "milliampere": "mA",
        "volt": "V",
        "millivolt": "mV",
        "kilovolt": "kV",
        "newtonMetre": "N·m",
        "kilogram": "kg",
        "tonne": "t",
        "second": "s",
        "millisecond": "ms",
        "minute": "min",
        "hour": "h",
        "percent": "%",
        "unity": "1",
        "partsPerMillion": "ppm",
    }
)
