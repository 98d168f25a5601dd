"""`location`: location = "city, state, country" (Python port of plugins/location).

Each part is trimmed; null or blank parts are skipped; when no part is left, location is null.
city, state and country are removed. Config: `separator` (default ", ").
"""

from cdc_transform import ColumnDef, Description, Keep, Transform, export


class Location(Transform):
    def __init__(self, separator: str = ", "):
        self.separator = separator

    @staticmethod
    def describe():
        return Description(
            "location",
            "0.1.0",
            reads=["city", "state", "country"],
            writes=[ColumnDef.text("location", "city, state and country, trimmed and joined")],
            removes=["city", "state", "country"],
        )

    @classmethod
    def configure(cls, config):
        return cls(config.get("separator", ", "))

    def apply(self, event):
        parts = (event.text("city"), event.text("state"), event.text("country"))
        parts = [p.strip() for p in parts if p is not None]
        joined = self.separator.join(p for p in parts if p)
        event.set("location", joined or None)
        return Keep


Transformer = export(Location)
