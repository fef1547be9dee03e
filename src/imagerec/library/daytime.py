"""The time of day a photo was taken — sunrise, sunset, night, morning … — read from what was recorded.

Nothing is guessed from the pixels: a photo's time of day comes from its EXIF
date taken (the camera's local clock) and, when it has one, its GPS position.

- **With a GPS position**, sunrise, sunset and night follow the sun at that
  place on that day (the ``astral`` package; the position's time zone from
  ``timezonefinder``, offline): *sunrise* is from dawn (civil twilight, the
  sun 6° below the horizon) to one hour after sunrise, *sunset* from one hour
  before sunset to dusk, *night* after dusk or before dawn. Where the sun
  does not set or rise that day (polar summer or winter), there is no sunrise
  or sunset, and night is the sun below -6° (white nights have no night).
- **Without GPS**, the local clock hour: sunrise 05:00–08:00, sunset
  17:00–21:00, night 22:00–05:00.
- *Morning* (05:00–12:00), *afternoon* (12:00–17:00) and *evening*
  (17:00–22:00) are always the clock: people mean the clock by them.

The sun's times are computed once per place (to 0.01°) and day, so a query
over many photos of one trip costs a few look-ups.

>>> read_daytime("sunsets")
'sunset'
>>> moment("sunset", "2019:06:01 21:30:00", 48.8566, 2.3522)["matches"]   # Paris: sunset 21:45
True
>>> moment("sunset", "2019:12:01 21:30:00", 48.8566, 2.3522)["matches"]   # sunset was 16:56
False
>>> moment("sunset", "2019:12:01 18:30:00", None, None)["how"]
'18:30 by the clock (no GPS position): sunset is 17:00–21:00'

Indexing stores the parts of the day a photo falls in as one number, a bit
per part (:func:`parts_mask`), so a search reads them off an index:

>>> parts_mask("2019:06:01 21:30:00", 48.8566, 2.3522) == bit("sunset") | bit("evening")
True
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

__all__ = ["DAYTIMES", "BY_SUN", "bit", "clock_window", "read_daytime", "moment", "matches", "parts_mask", "reading"]

# The clock windows [start, end) in hours; a window past midnight wraps (22 -> 5).
_CLOCK = {"sunrise": (5, 8), "sunset": (17, 21), "night": (22, 5),
          "morning": (5, 12), "afternoon": (12, 17), "evening": (17, 22)}
_BY_SUN = BY_SUN = ("sunrise", "sunset", "night")  # read by the sun when a photo has a GPS position
_WORDS = {"dawn": "sunrise", "daybreak": "sunrise", "dusk": "sunset", "nighttime": "night", "night-time": "night"}
DAYTIMES = tuple(_CLOCK)  # never reordered: a part's bit in the catalog's ``daytime`` column is 1 << its place here


def clock_window(part: str) -> tuple[int, int]:
    """``part``'s clock hours ``[start, end)`` (``end < start`` wraps past midnight), used without GPS.

    >>> clock_window("sunset"), clock_window("night")
    ((17, 21), (22, 5))
    """
    return _CLOCK[part]


def read_daytime(word: str) -> str | None:
    """The time of day a query word names ("sunsets" -> "sunset", "dusk" -> "sunset"), or None."""
    word = word.lower()
    for candidate in (word, word[:-1] if word.endswith("s") else word):
        if candidate in _CLOCK:
            return candidate
        if candidate in _WORDS:
            return _WORDS[candidate]
    return None


def reading(part: str) -> str:
    """How a time-of-day term is read, in words (for ``--json``'s ``reading``)."""
    start, end = _CLOCK[part]
    clock = f"{start:02d}:00–{end:02d}:00 by the clock"
    if part == "sunrise":
        return f"taken from dawn to 1 h after sunrise at the photo's GPS position and date (without GPS: {clock})"
    if part == "sunset":
        return f"taken from 1 h before sunset to dusk at the photo's GPS position and date (without GPS: {clock})"
    if part == "night":
        return f"taken after dusk or before dawn at the photo's GPS position and date (without GPS: {clock})"
    return f"taken {clock} (the EXIF time)"


def _clock(taken_at: str | None) -> dt.datetime | None:
    """The EXIF time as a naive datetime ("2019:06:01 21:30:00"), None when absent or malformed."""
    text = taken_at or ""
    try:  # slicing is 5x faster than strptime, and this runs once per candidate photo
        return dt.datetime(int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]))
    except ValueError:
        return None


def _in_window(hour: float, window: tuple[int, int]) -> bool:
    start, end = window
    return start <= hour < end if start < end else hour >= start or hour < end


@lru_cache(maxsize=1)
def _zones():
    from timezonefinder import TimezoneFinder  # loads its data once (about 0.5 s)

    return TimezoneFinder()


@lru_cache(maxsize=4096)
def _zone(latitude: float, longitude: float):
    import zoneinfo

    name = _zones().timezone_at(lat=latitude, lng=longitude)
    try:
        return zoneinfo.ZoneInfo(name) if name else None
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):  # no tz database here: the clock is all we can read
        return None


@lru_cache(maxsize=65536)
def _sun(day: dt.date, latitude: float, longitude: float) -> dict:
    """The sun's dawn, sunrise, sunset and dusk that day (naive local clock times), each left out when it
    does not happen there (polar summer or winter; white nights have no dusk or dawn)."""
    from astral import Observer, sun as events

    zone, observer = _zone(latitude, longitude), Observer(latitude, longitude)
    if zone is None:
        return {}
    found: dict = {"zone": str(zone)}
    for name in ("dawn", "sunrise", "sunset", "dusk"):
        try:
            found[name] = getattr(events, name)(observer, day, tzinfo=zone).replace(tzinfo=None)
        except ValueError:  # the sun does not reach that elevation that day
            pass
    return found


def _polar_night(clock: dt.datetime, latitude: float, longitude: float) -> bool:
    from astral import Observer
    from astral.sun import elevation

    return elevation(Observer(latitude, longitude), clock.replace(tzinfo=_zone(latitude, longitude))) < -6.0


def _sunset_span(sun: dict) -> tuple[dt.datetime, dt.datetime]:
    """From 1 h before sunset to dusk (a dusk after midnight comes back as the early hours of the same date)."""
    dusk, hour = sun.get("dusk"), dt.timedelta(hours=1)
    end = sun["sunset"] + hour if dusk is None else dusk + dt.timedelta(days=dusk < sun["sunset"])
    return sun["sunset"] - hour, end


def _verdict(part: str, clock: dt.datetime, latitude: float | None, longitude: float | None):
    """(matches, sun times or None, the window it was compared with or None) for one photo."""
    if part not in _BY_SUN or latitude is None or longitude is None:
        start, end = _CLOCK[part]
        return _in_window(clock.hour + clock.minute / 60, (start, end)), None, None
    latitude, longitude = round(latitude, 2), round(longitude, 2)
    sun = _sun(clock.date(), latitude, longitude)
    if not sun:  # no time zone known for the position: the sun's times cannot be set against the clock
        return _verdict(part, clock, None, None)
    hour = dt.timedelta(hours=1)
    dawn, dusk = sun.get("dawn"), sun.get("dusk")
    if part == "night":
        if dawn is None or dusk is None:
            return ("sunrise" not in sun and _polar_night(clock, latitude, longitude)), sun, None
        if dusk < dawn:  # dusk after midnight (white-ish nights): the day's only night is between them
            return dusk < clock < dawn, sun, (dusk, dawn)
        return clock < dawn or clock > dusk, sun, (dusk, dawn)
    if part == "sunrise" and "sunrise" in sun:
        start = dawn if dawn is not None and dawn < sun["sunrise"] else sun["sunrise"] - hour
        span = (start, sun["sunrise"] + hour)
        return span[0] <= clock <= span[1], sun, span
    if part == "sunset" and "sunset" in sun:
        span = _sunset_span(sun)
        if clock.hour < 12:  # a dusk after midnight: the photo may end yesterday's sunset
            before = _sun(clock.date() - dt.timedelta(days=1), latitude, longitude)
            late = _sunset_span(before) if "sunset" in before else None
            if late is not None and late[0] <= clock <= late[1]:
                return True, before, late
        return span[0] <= clock <= span[1], sun, span
    return False, sun, None


def moment(part: str, taken_at: str | None, latitude: float | None, longitude: float | None) -> dict:
    """Whether a photo taken at ``taken_at`` (EXIF, local clock) and position was taken at ``part`` of the day, and how that was read.

    ``{"matches": bool, "by": "sun" | "clock" | None, "how": "..."}`` (plus the sun's times when read by the sun).
    """
    clock = _clock(taken_at)
    if clock is None:
        return {"matches": False, "by": None, "how": "no EXIF time taken"}
    hit, sun, span = _verdict(part, clock, latitude, longitude)
    shown = clock.strftime("%H:%M")
    if sun is None:
        start, end = _CLOCK[part]
        why = "" if part not in _BY_SUN else " (no GPS position)" if latitude is None or longitude is None else \
            " (no time zone known for its GPS position)"
        return {"matches": hit, "by": "clock", "how": f"{shown} by the clock{why}: {part} is {start:02d}:00–{end:02d}:00"}
    times = {name: sun[name].strftime("%H:%M") for name in ("dawn", "sunrise", "sunset", "dusk") if name in sun}
    if span is None:
        what = "the sun stays more than 6° below the horizon all day" if hit else f"there is no {part}"
        return {"matches": hit, "by": "sun", "sun": times,
                "how": f"{shown}: at the photo's GPS position that day ({sun['zone']}) {what}"
                       f" (sunrise {times.get('sunrise', 'none')}, sunset {times.get('sunset', 'none')})"}
    how = (f"{shown}; at the photo's GPS position that day ({sun['zone']}) {part} is "
           f"{span[0]:%H:%M}–{span[1]:%H:%M} (sunrise {times.get('sunrise', 'none')}, sunset {times.get('sunset', 'none')})")
    return {"matches": hit, "by": "sun", "how": how, "sun": times}


def matches(part: str, taken_at: str | None, latitude: float | None, longitude: float | None) -> int:
    """1 if the photo was taken at ``part`` of the day, else 0 (the SQL function the search registers)."""
    clock = _clock(taken_at)
    return 0 if clock is None else int(_verdict(part, clock, latitude, longitude)[0])


def bit(part: str) -> int:
    """``part``'s bit in a :func:`parts_mask` ("sunrise" 1, "sunset" 2, "night" 4, "morning" 8 …)."""
    return 1 << DAYTIMES.index(part)


def parts_mask(taken_at: str | None, latitude: float | None, longitude: float | None) -> int:
    """The parts of the day a photo falls in, one :func:`bit` each (they overlap: sunset and evening).

    Exactly the parts :func:`matches` says yes to, so a search on the stored mask answers as testing each
    photo would; 0 without an EXIF time.

    >>> parts_mask("2019:12:01 18:30:00", None, None) == bit("sunset") | bit("evening")
    True
    >>> parts_mask(None, 48.8566, 2.3522)
    0
    """
    clock = _clock(taken_at)
    if clock is None:
        return 0
    return sum(1 << number for number, part in enumerate(DAYTIMES) if _verdict(part, clock, latitude, longitude)[0])
