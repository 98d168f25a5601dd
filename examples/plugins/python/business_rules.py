"""`business-rules`: filters and validates customer events (Python port of plugins/business-rules).

- DELETE events are dropped (config `drop_deletes`, default true).
- Events without an email (null or blank) are rejected: `missing email` (config `require_email`).
- Events whose lifetime_value is below `min_lifetime_value` (a decimal, default 0) are rejected,
  e.g. `lifetime_value -5.00 is negative`. A null lifetime_value passes.
"""

from cdc_transform import (
    Decimal,
    Description,
    Drop,
    Json,
    Keep,
    Op,
    Reject,
    Transform,
    export,
    format_value,
    type_name,
)
from cdc_transform import parse_decimal


class BusinessRules(Transform):
    def __init__(self, drop_deletes=True, require_email=True, min_lifetime_value=Decimal(0)):
        self.drop_deletes = drop_deletes
        self.require_email = require_email
        self.min_lifetime_value = min_lifetime_value

    @staticmethod
    def describe():
        return Description("business-rules", "0.1.0", reads=["email", "lifetime_value"])

    @classmethod
    def configure(cls, config):
        return cls(
            config.flag("drop_deletes", True),
            config.flag("require_email", True),
            config.decimal("min_lifetime_value", Decimal(0)),
        )

    def apply(self, event):
        if event.op is Op.DELETE:
            # A kept delete has no after image to validate.
            return Drop if self.drop_deletes else Keep
        if self.require_email:
            email = event.text("email")
            if email is None or not email.strip():
                return Reject("missing email")
        ltv = event.get("lifetime_value")
        minimum = self.min_lifetime_value
        if ltv is None:
            below = False
        elif isinstance(ltv, float):
            below = ltv < float(minimum)
        elif isinstance(ltv, str) and not isinstance(ltv, Json):
            try:
                below = parse_decimal(ltv) < minimum
            except ValueError:
                return Reject(f"lifetime_value `{ltv}` is not a number")
        elif isinstance(ltv, (int, Decimal)) and not isinstance(ltv, bool):
            below = ltv < minimum
        else:
            return Reject(f"lifetime_value has unsupported type {type_name(ltv)}")
        if below:
            if minimum == 0:
                return Reject(f"lifetime_value {format_value(ltv)} is negative")
            return Reject(f"lifetime_value {format_value(ltv)} is below {format_value(minimum)}")
        return Keep


Transformer = export(BusinessRules)
