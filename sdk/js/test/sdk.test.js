// Native tests of the JavaScript SDK and the JavaScript reference transforms: the same batch loop the
// component runs, on WIT-shaped batches. Run: node --test sdk/js/test/
import { test } from "node:test";
import assert from "node:assert/strict";

import { ColumnDef, Decimal, Keep, Drop, reject, encodeColumn, exportTransform, formatValue } from "../src/index.js";
import NameConcat from "../../../examples/plugins/js/name-concat.js";
import BusinessRules from "../../../examples/plugins/js/business-rules.js";

function batch(ops, columns) {
  return {
    ops,
    sources: ops.map(() => ({ table: 0, lsn: undefined, txid: undefined, tsMs: 0n, snapshot: false })),
    tables: [{ schema: "public", table: "t" }],
    after: columns,
    before: [],
  };
}
const text = (name, values) => encodeColumn(ColumnDef.text(name), values);
const decimal = (name, values) => encodeColumn(ColumnDef.decimal(name, 12, 2), values);

function run(Class, config, b) {
  const t = exportTransform(Class);
  t.configure(config);
  return t.process(b);
}

test("name-concat trims, skips blanks and writes null when nothing is left", () => {
  const out = run(NameConcat, [], batch(["create", "create"], [text("first_name", ["  Ada ", " "]), text("last_name", ["\u00a0Lovelace", null])]));
  assert.deepEqual(out.outcomes, [{ tag: "keep" }, { tag: "keep" }]);
  assert.deepEqual(out.writes[0].present, [true, false]);
  assert.equal(new TextDecoder().decode(out.writes[0].values.val.data), "Ada Lovelace");
});

test("business-rules keeps, drops and rejects like the Rust plugin", () => {
  const b = batch(
    ["create", "delete", "create", "create"],
    [text("email", ["a@b.c", "a@b.c", " ", "a@b.c"]), decimal("lifetime_value", [new Decimal(100n, 2), null, null, Decimal.parse("-5.00")])],
  );
  const out = run(BusinessRules, [], b);
  assert.deepEqual(out.outcomes, [
    { tag: "keep" },
    { tag: "drop" },
    { tag: "reject", val: "missing email" },
    { tag: "reject", val: "lifetime_value -5.00 is negative" },
  ]);
  const min = run(BusinessRules, [["min_lifetime_value", "100.00"]], batch(["create"], [text("email", ["x"]), decimal("lifetime_value", [Decimal.parse("99.99")])]));
  assert.deepEqual(min.outcomes, [{ tag: "reject", val: "lifetime_value 99.99 is below 100.00" }]);
  assert.throws(() => exportTransform(BusinessRules).configure([["drop_deletes", "sometimes"]]), /drop_deletes/);
});

test("decimals are exact and keep their scale", () => {
  assert.equal(Decimal.parse(" -0.005 ").toString(), "-0.005");
  assert.equal(Decimal.parse("123456789012345678901234.5").toString(), "123456789012345678901234.5");
  assert.equal(Decimal.parse("99.99").compare(Decimal.parse("100")), -1);
  assert.throws(() => Decimal.parse("."));
  assert.equal(formatValue(null), "null");
  const col = decimal("d", [Decimal.parse("-42.5")]);
  assert.equal(col.values.val.unscaled.length, 16);
});

test("undeclared writes reject the event", () => {
  class Bad {
    static describe() {
      return { name: "bad", version: "1", reads: ["a"], writes: [] };
    }
    apply(e) {
      e.set("zzz", 1);
      return Keep;
    }
  }
  const out = run(Bad, [], batch(["create"], [text("a", ["x"])]));
  assert.deepEqual(out.outcomes, [{ tag: "reject", val: "column `zzz` is not declared in writes" }]);
  assert.ok(Drop && reject("x").reason === "x");
});
