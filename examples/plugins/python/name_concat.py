"""`name-concat`: full_name = first_name + separator + last_name (Python port of plugins/name-concat).

Each part is trimmed; null or blank parts are skipped; when no part is left, full_name is null.
first_name and last_name are removed. Config: `separator` (default " ").
"""

from cdc_transform import ColumnDef, Description, Keep, Transform, export


class NameConcat(Transform):
    def __init__(self, separator: str = " "):
        self.separator = separator

    @staticmethod
    def describe():
        return Description(
            "name-concat",
            "0.1.0",
            reads=["first_name", "last_name"],
            writes=[ColumnDef.text("full_name", "first_name and last_name, trimmed and joined")],
            removes=["first_name", "last_name"],
        )

    @classmethod
    def configure(cls, config):
        return cls(config.get("separator", " "))

    def apply(self, event):
        parts = [p.strip() for p in (event.text("first_name"), event.text("last_name")) if p is not None]
        joined = self.separator.join(p for p in parts if p)
        event.set("full_name", joined or None)
        return Keep


Transformer = export(NameConcat)
