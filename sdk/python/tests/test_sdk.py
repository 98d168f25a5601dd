"""Native tests of the Python SDK and the Python reference transforms (the same batch loop the
component runs). Run: python -m unittest discover -s sdk/python/tests (with sdk/python/src and
examples/plugins/python on the path, as scripts/test does)."""

import datetime
import unittest

from cdc_transform import ColumnDef, Config, Decimal, Description, Drop, Keep, Reject, Transform, format_value
from cdc_transform.testing import event, run

import business_rules
import name_concat


class Echo(Transform):
    @staticmethod
    def describe():
        return Description("echo", "1", reads=["a", "d"], writes=[ColumnDef.text("b"), ColumnDef.decimal("e", 12, 2)])

    def apply(self, e):
        if e.text("a") == "undeclared":
            e.set("zzz", 1)
        e.set("b", e.text("a"))
        e.set("e", e.get("d"))
        return Keep


class SdkTest(unittest.TestCase):
    def test_values_round_trip(self):
        r = run(Echo(), [event(a="x", d=Decimal("1.5")), event(a=None, d=None), event(a="undeclared")])
        self.assertEqual(r[0].outcome, Keep)
        self.assertEqual(r[0].writes, {"b": "x", "e": Decimal("1.50")})
        self.assertEqual(r[1].writes, {"b": None, "e": None})
        self.assertEqual(r[2].outcome, Reject("column `zzz` is not declared in writes"))

    def test_format_value_matches_rust(self):
        self.assertEqual(format_value(Decimal("-42.50")), "-42.50")
        self.assertEqual(format_value(Decimal("1E-8")), "0.00000001")
        self.assertEqual(format_value(-5.0), "-5")
        self.assertEqual(format_value(-2.5), "-2.5")
        self.assertEqual(format_value(datetime.date(1970, 1, 2)), "date(1)")
        self.assertEqual(format_value(None), "null")

    def test_config(self):
        c = Config([("f", "Yes"), ("bad", "2"), ("min", "-10")])
        self.assertTrue(c.flag("f", False))
        with self.assertRaisesRegex(ValueError, "`2`"):
            c.flag("bad", True)
        self.assertEqual(str(c.decimal("min", Decimal(0))), "-10")
        with self.assertRaises(ValueError):
            Config([("min", "lots")]).decimal("min", Decimal(0))


class ReferenceTransformsTest(unittest.TestCase):
    def test_name_concat(self):
        r = run(name_concat.NameConcat(), [event(first_name="  Ada ", last_name="\u00a0Lovelace"), event(first_name=" ", last_name=None)])
        self.assertEqual(r[0].writes["full_name"], "Ada Lovelace")
        self.assertIsNone(r[1].writes["full_name"])

    def test_business_rules(self):
        p = business_rules.BusinessRules.configure(Config([]))
        r = run(
            p,
            [
                event(email="a@b.c", lifetime_value=Decimal("1.00")),
                event("delete", email="a@b.c"),
                event(email=" ", lifetime_value=None),
                event(email="a@b.c", lifetime_value=Decimal("-5.00")),
            ],
        )
        self.assertEqual([x.outcome for x in r], [Keep, Drop, Reject("missing email"), Reject("lifetime_value -5.00 is negative")])
        # one batch per column type
        self.assertEqual(run(p, [event(email="a", lifetime_value="n/a")])[0].outcome, Reject("lifetime_value `n/a` is not a number"))
        self.assertEqual(run(p, [event(email="a", lifetime_value=True)])[0].outcome, Reject("lifetime_value has unsupported type boolean"))
        m = business_rules.BusinessRules.configure(Config([("min_lifetime_value", "100.00")]))
        self.assertEqual(run(m, [event(email="x", lifetime_value=Decimal("99.99"))])[0].outcome, Reject("lifetime_value 99.99 is below 100.00"))


if __name__ == "__main__":
    unittest.main()
