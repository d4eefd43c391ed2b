"""What the energy CSVs must look like: columns, time format, sampling step, plausible ranges.

The ranges are physical plausibility bounds with a wide margin, not statistics of the
training data: they exist to catch unit mix-ups (kW for MW, MWh for GWh), sentinel values
(-9999, 9999) and sensor faults, and they must also admit the held-out station-2 files
(ETTh2/ETTm2), which are not in the developers' copy.
Observed in the real files (shared/data/energy):
  ETTh1/ETTm1: loads -26.4 .. 24.2 MW, OT -4.2 .. 46.0 degC.
  OPSD (GWh/day): Consumption 842 .. 1710, Wind 5.8 .. 826, Solar 2.0 .. 242.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "CsvSchema",
    "ETT_15MIN",
    "ETT_HOURLY",
    "ETT_HOURLY_BORDERS",
    "MIN_ROWS",
    "OPSD_DAILY",
    "ett_schema",
    "rows_needed",
    "split_fractions",
]

# How long a series must be to be split (pipelines/energy/data.py splits; validate checks the length).
ETT_HOURLY_BORDERS = (12 * 30 * 24, 16 * 30 * 24, 20 * 30 * 24)  # 8640, 11520, 14400 rows
MIN_ROWS = 300  # a split by time fractions needs this many rows (a 0.1 share is still 30 rows)


@dataclass(frozen=True)
class CsvSchema:
    time_column: str  # "date" for ETT, "Date" for OPSD
    value_columns: tuple[str, ...]  # the numeric columns the pipeline uses
    time_format: str  # strftime format of the time column
    freq_seconds: int  # the exact step between consecutive timestamps
    ranges: dict[str, tuple[float, float]]  # plausible [min, max] per value column
    # The exact, ordered column list of the file. Empty means (time_column, *value_columns);
    # a file with further columns (OPSD's derived "Wind+Solar") must declare them here.
    all_columns: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.all_columns:
            object.__setattr__(self, "all_columns", (self.time_column, *self.value_columns))
        missing = [c for c in (self.time_column, *self.value_columns) if c not in self.all_columns]
        if missing:
            raise ValueError(f"all_columns {self.all_columns} lacks {missing}")
        unknown = [c for c in self.ranges if c not in self.value_columns]
        if unknown:
            raise ValueError(f"ranges given for columns that are not value columns: {unknown}")
        for col, (lo, hi) in self.ranges.items():
            if not lo < hi:
                raise ValueError(f"range for {col!r} is empty: [{lo}, {hi}]")

    @property
    def extra_columns(self) -> tuple[str, ...]:
        """Declared columns that are neither the time column nor a value column."""
        used = {self.time_column, *self.value_columns}
        return tuple(c for c in self.all_columns if c not in used)


# ETT (Electricity Transformer Temperature): six loads of one transformer station in MW,
# "useful" (active) and "useless" (reactive) at high/middle/low voltage, plus top-oil temp.
_ETT_LOADS = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL")
_ETT_RANGES: dict[str, tuple[float, float]] = {
    # Loads: signed (reactive "useless" load and reverse flows go negative; ETTh1 has
    # HUFL -22.7, MUFL -25.1). +-300 MW is above the rating of the largest single
    # 220 kV substation transformers (~240 MVA) and >10x the largest station-1 value,
    # leaving room for the busier station 2; a kW-for-MW mix-up (thousands) still fails.
    **{col: (-300.0, 300.0) for col in _ETT_LOADS},
    # Oil temperature (degC): mineral oil sits at ambient when unloaded, and the coldest
    # Chinese winters reach about -50 degC; IEC 60076-7 caps top-oil temperature at
    # 105 degC even in emergency loading, so 120 degC can only be a sensor fault.
    "OT": (-50.0, 120.0),
}

ETT_HOURLY = CsvSchema(
    time_column="date",
    value_columns=(*_ETT_LOADS, "OT"),
    time_format="%Y-%m-%d %H:%M:%S",
    freq_seconds=3600,
    ranges=dict(_ETT_RANGES),
)

ETT_15MIN = CsvSchema(
    time_column="date",
    value_columns=(*_ETT_LOADS, "OT"),
    time_format="%Y-%m-%d %H:%M:%S",
    freq_seconds=900,
    ranges=dict(_ETT_RANGES),
)

# OPSD Germany: daily totals in GWh. Wind+Solar is derived (Wind + Solar) and not used,
# but it is in the file, so it is declared.
OPSD_DAILY = CsvSchema(
    time_column="Date",
    value_columns=("Consumption", "Wind", "Solar"),
    time_format="%Y-%m-%d",
    freq_seconds=86400,
    ranges={
        # Energy is non-negative. Germany's record peak load is ~85 GW, i.e. at most
        # ~2,050 GWh if the peak lasted all day; 3,000 leaves a ~50% margin. A MWh-for-GWh
        # mix-up (~1,000,000) fails.
        "Consumption": (0.0, 3000.0),
        # ~56 GW of wind was installed at the end of 2017 (1,350 GWh/day at a 100% capacity
        # factor, never reached); 2,500 GWh/day would need >100 GW running flat out all day.
        "Wind": (0.0, 2500.0),
        # ~43 GW of PV at the end of 2017; even a clear midsummer day gives a PV fleet under
        # ~8 full-load hours (~350 GWh). 1,500 GWh/day would need 100 GW at full output for
        # 15 h, which a PV fleet cannot do.
        "Solar": (0.0, 1500.0),
    },
    all_columns=("Date", "Consumption", "Wind", "Solar", "Wind+Solar"),
)

_ETT_BY_NAME = {
    "ETTh1": ETT_HOURLY,
    "ETTh2": ETT_HOURLY,
    "ETTm1": ETT_15MIN,
    "ETTm2": ETT_15MIN,
}


def ett_schema(name: str) -> CsvSchema:
    """Schema of an ETT file by its name: "ETTh1"/"ETTh2" hourly, "ETTm1"/"ETTm2" 15-min.

    A file name or path ("data/ETTm1.csv") is accepted too.
    """
    stem = Path(str(name)).name
    if stem.lower().endswith(".csv"):
        stem = stem[:-4]
    try:
        return _ETT_BY_NAME[stem]
    except KeyError:
        raise ValueError(f"unknown ETT dataset {name!r}; expected one of {sorted(_ETT_BY_NAME)}") from None


def rows_needed(split, freq_seconds: int) -> int:
    """The fewest data rows a series must have for `split` (checked by validate and by prepare).

    "ett": the test border (14,400 hourly rows; x4 for 15-minute data). Fractions: MIN_ROWS, so that
    every split holds at least a few dozen rows (and the scaler at least two).
    """
    if split == "ett":
        if freq_seconds <= 0 or freq_seconds > 3600 or 3600 % freq_seconds:
            raise ValueError(
                f"energy.data.split: the ETT split is defined for hourly and 15-minute ETT data, not a "
                f"{freq_seconds} s step; give [train, val, test] fractions instead"
            )
        return ETT_HOURLY_BORDERS[-1] * (3600 // freq_seconds)
    split_fractions(split)
    return MIN_ROWS


def split_fractions(split) -> tuple[float, float, float]:
    """(train, val, test) of a fraction split; ValueError naming energy.data.split when malformed."""
    try:
        train, val, test = (float(f) for f in split)
    except (TypeError, ValueError):
        raise ValueError(f"energy.data.split: {split!r} is neither 'ett' nor [train, val, test] fractions") from None
    if min(train, val, test) <= 0 or abs(train + val + test - 1) > 1e-6:
        raise ValueError(f"energy.data.split: fractions {split} must be positive and sum to 1")
    return train, val, test
