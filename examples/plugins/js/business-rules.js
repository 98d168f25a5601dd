// `business-rules`: filters and validates customer events (JavaScript port of plugins/business-rules).
// - DELETE events are dropped (config `drop_deletes`, default true).
// - Events without an email (null or blank) are rejected: `missing email` (config `require_email`).
// - Events whose lifetime_value is below `min_lifetime_value` (a decimal, default 0) are rejected,
//   e.g. `lifetime_value -5.00 is negative`. A null lifetime_value passes.
import { Decimal, Drop, Keep, Op, formatValue, reject, typeName } from "cdc-transform";

export default class BusinessRules {
  constructor(dropDeletes = true, requireEmail = true, minLifetimeValue = new Decimal(0n, 0)) {
    this.dropDeletes = dropDeletes;
    this.requireEmail = requireEmail;
    this.min = minLifetimeValue;
  }
  static describe() {
    return { name: "business-rules", version: "0.1.0", reads: ["email", "lifetime_value"] };
  }
  static configure(config) {
    return new BusinessRules(
      config.flag("drop_deletes", true),
      config.flag("require_email", true),
      config.decimal("min_lifetime_value", new Decimal(0n, 0)),
    );
  }
  apply(event) {
    if (event.op === Op.DELETE) {
      // A kept delete has no after image to validate.
      return this.dropDeletes ? Drop : Keep;
    }
    if (this.requireEmail) {
      const email = event.text("email");
      if (email === null || email.trim() === "") return reject("missing email");
    }
    const ltv = event.get("lifetime_value");
    let below;
    if (ltv === null) below = false;
    else if (typeof ltv === "number") below = ltv < this.min.toNumber();
    else if (typeof ltv === "string") {
      let d;
      try {
        d = Decimal.parse(ltv);
      } catch {
        return reject(`lifetime_value \`${ltv}\` is not a number`);
      }
      below = d.compare(this.min) < 0;
    } else if (ltv instanceof Decimal || typeof ltv === "bigint") below = Decimal.from(ltv).compare(this.min) < 0;
    else return reject(`lifetime_value has unsupported type ${typeName(ltv)}`);
    if (below) {
      return reject(
        this.min.isZero()
          ? `lifetime_value ${formatValue(ltv)} is negative`
          : `lifetime_value ${formatValue(ltv)} is below ${this.min}`,
      );
    }
    return Keep;
  }
}
