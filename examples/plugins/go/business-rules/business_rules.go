// Package businessrules is `business-rules` (Go port of plugins/business-rules):
//   - DELETE events are dropped (config `drop_deletes`, default true);
//   - events without an email (null or blank) are rejected: `missing email` (config `require_email`);
//   - events whose lifetime_value is below `min_lifetime_value` (a decimal, default 0) are rejected,
//     e.g. `lifetime_value -5.00 is negative`. A null lifetime_value passes.
package businessrules

import "cdchost/transform"

// BusinessRules filters and validates customer events.
type BusinessRules struct {
	DropDeletes, RequireEmail bool
	MinLifetimeValue          transform.Decimal
}

// Apply decides for one event.
func (p *BusinessRules) Apply(e *transform.Event) transform.Outcome {
	if e.Op() == transform.Delete {
		// A kept delete has no after image to validate.
		if p.DropDeletes {
			return transform.Drop()
		}
		return transform.Keep()
	}
	if p.RequireEmail {
		if email, ok := e.Text("email"); !ok || transform.Trim(email) == "" {
			return transform.Reject("missing email")
		}
	}
	ltv := e.Get("lifetime_value")
	var below bool
	switch ltv.Kind {
	case transform.Null:
		below = false
	case transform.Float64:
		below = ltv.F < p.MinLifetimeValue.Float64()
	case transform.Text:
		d, err := transform.ParseDecimal(ltv.S)
		if err != nil {
			return transform.Reject("lifetime_value `%s` is not a number", ltv.S)
		}
		below = d.Cmp(p.MinLifetimeValue) < 0
	case transform.Int32, transform.Int64:
		below = transform.DecimalFromInt64(ltv.I).Cmp(p.MinLifetimeValue) < 0
	case transform.DecimalKind:
		below = ltv.D.Cmp(p.MinLifetimeValue) < 0
	default:
		return transform.Reject("lifetime_value has unsupported type %s", ltv.Kind)
	}
	if below {
		if p.MinLifetimeValue.IsZero() {
			return transform.Reject("lifetime_value %s is negative", ltv)
		}
		return transform.Reject("lifetime_value %s is below %s", ltv, p.MinLifetimeValue)
	}
	return transform.Keep()
}

// Plugin is the registered plugin.
var Plugin = transform.Plugin{
	Description: transform.Description{
		Name:    "business-rules",
		Version: "0.1.0",
		Reads:   []string{"email", "lifetime_value"},
	},
	Configure: func(c transform.Config) (transform.Transform, error) {
		p := &BusinessRules{}
		var err error
		if p.DropDeletes, err = c.Flag("drop_deletes", true); err != nil {
			return nil, err
		}
		if p.RequireEmail, err = c.Flag("require_email", true); err != nil {
			return nil, err
		}
		if p.MinLifetimeValue, err = c.Decimal("min_lifetime_value", transform.Decimal{}); err != nil {
			return nil, err
		}
		return p, nil
	},
}

func init() { transform.Register(Plugin) }
