package transform

import (
	"fmt"
	"math/big"
	"math/bits"
	"strconv"
	"strings"
)

// Kind is the type of a column or value. The values are the WIT column-type tags.
type Kind uint8

// The kinds; Null is only a value kind.
const (
	Boolean Kind = iota
	Int32
	Int64
	Float64
	Text
	Bytes
	DecimalKind
	Date
	Timestamp
	Timestamptz
	JSON
	Null
)

var kindNames = [...]string{"boolean", "int32", "int64", "float64", "text", "bytes", "decimal", "date",
	"timestamp", "timestamptz", "json", "null"}

// String is the WIT type name ("text", "decimal", ...).
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Decimal is an exact decimal: a 128-bit two's complement unscaled value times 10^-Scale.
type Decimal struct {
	Hi        int64  // high 64 bits of the unscaled value
	Lo        uint64 // low 64 bits of the unscaled value
	Precision uint8
	Scale     uint8
}

// DecimalFromInt64 is v with scale 0.
func DecimalFromInt64(v int64) Decimal {
	hi := int64(0)
	if v < 0 {
		hi = -1
	}
	return Decimal{Hi: hi, Lo: uint64(v), Precision: 19}
}

// IsZero tells whether the value is zero.
func (d Decimal) IsZero() bool { return d.Hi == 0 && d.Lo == 0 }

// Negative tells whether the value is below zero.
func (d Decimal) Negative() bool { return d.Hi < 0 }

func (d Decimal) neg() Decimal {
	lo, borrow := bits.Sub64(0, d.Lo, 0)
	hi := uint64(0) - uint64(d.Hi) - borrow
	d.Hi, d.Lo = int64(hi), lo
	return d
}

// mul10 multiplies the unscaled value by ten (wrapping on overflow beyond 128 bits).
func (d Decimal) mul10() Decimal {
	hi, lo := bits.Mul64(d.Lo, 10)
	d.Lo = lo
	d.Hi = int64(uint64(d.Hi)*10 + hi)
	return d
}

// Rescale returns d with the unscaled value multiplied up to scale (scale >= d.Scale).
func (d Decimal) Rescale(scale uint8) Decimal {
	for d.Scale < scale {
		d = d.mul10()
		d.Scale++
	}
	return d
}

// Cmp compares exactly whatever the scales: -1, 0 or 1.
func (d Decimal) Cmp(o Decimal) int {
	a, b := d.Rescale(o.Scale), o.Rescale(d.Scale)
	switch {
	case a.Hi < b.Hi:
		return -1
	case a.Hi > b.Hi:
		return 1
	case a.Lo < b.Lo:
		return -1
	case a.Lo > b.Lo:
		return 1
	}
	return 0
}

// Big is the unscaled value as a big.Int.
func (d Decimal) Big() *big.Int {
	v := new(big.Int).SetInt64(d.Hi)
	v.Lsh(v, 64)
	return v.Or(v, new(big.Int).SetUint64(d.Lo))
}

// Float64 is the nearest float.
func (d Decimal) Float64() float64 {
	f, _ := new(big.Float).SetInt(d.Big()).Float64()
	for i := uint8(0); i < d.Scale; i++ {
		f /= 10
	}
	return f
}

// String formats the value keeping its scale: "-42.50".
func (d Decimal) String() string {
	u := d.Big()
	neg := u.Sign() < 0
	digits := new(big.Int).Abs(u).String()
	scale := int(d.Scale)
	var out string
	switch {
	case scale == 0:
		out = digits
	case len(digits) > scale:
		out = digits[:len(digits)-scale] + "." + digits[len(digits)-scale:]
	default:
		out = "0." + strings.Repeat("0", scale-len(digits)) + digits
	}
	if neg {
		return "-" + out
	}
	return out
}

// ParseDecimal parses "[+-]digits[.digits]" (surrounding whitespace allowed), keeping the written scale.
func ParseDecimal(s string) (Decimal, error) {
	t := Trim(s)
	neg := false
	if t != "" && (t[0] == '-' || t[0] == '+') {
		neg = t[0] == '-'
		t = t[1:]
	}
	intPart, frac, _ := strings.Cut(t, ".")
	if intPart == "" && frac == "" {
		return Decimal{}, fmt.Errorf("`%s` is not a decimal: no digits", s)
	}
	var d Decimal
	for _, part := range []string{intPart, frac} {
		for i := 0; i < len(part); i++ {
			c := part[i]
			if c < '0' || c > '9' {
				return Decimal{}, fmt.Errorf("`%s` is not a decimal: only digits, one '.' and a leading sign are allowed", s)
			}
			if d.Hi > (1<<62)/5 {
				return Decimal{}, fmt.Errorf("`%s` is not a decimal: too many digits", s)
			}
			d = d.mul10()
			lo, carry := bits.Add64(d.Lo, uint64(c-'0'), 0)
			d.Lo, d.Hi = lo, d.Hi+int64(carry)
		}
	}
	if len(frac) > 255 {
		return Decimal{}, fmt.Errorf("`%s` is not a decimal: more than 255 fractional digits", s)
	}
	d.Scale = uint8(len(frac))
	d.Precision = uint8(min(len(intPart)+len(frac), 38))
	if neg {
		d = d.neg()
	}
	return d, nil
}

// Value is one typed value. Kind tells which field is set: B (Boolean), I (Int32, Int64, Date as days,
// Timestamp and Timestamptz as microseconds), F (Float64), S (Text, JSON), Raw (Bytes), D (DecimalKind).
// Strings and bytes read from an event point into the batch: copy them to keep them past the batch.
type Value struct {
	Kind Kind
	B    bool
	I    int64
	F    float64
	S    string
	Raw  []byte
	D    Decimal
}

// NullValue is the null value.
var NullValue = Value{Kind: Null}

// TextValue is a text value.
func TextValue(s string) Value { return Value{Kind: Text, S: s} }

// DecimalValue is a decimal value.
func DecimalValue(d Decimal) Value { return Value{Kind: DecimalKind, D: d} }

// IsNull tells whether the value is null.
func (v Value) IsNull() bool { return v.Kind == Null }

// String formats the value for messages exactly as every cdc-host SDK does (decimals keep their scale).
func (v Value) String() string {
	switch v.Kind {
	case Null:
		return "null"
	case Boolean:
		return strconv.FormatBool(v.B)
	case Int32, Int64:
		return strconv.FormatInt(v.I, 10)
	case Float64:
		if v.F == float64(int64(v.F)) && v.F > -1e16 && v.F < 1e16 {
			return strconv.FormatInt(int64(v.F), 10)
		}
		return strconv.FormatFloat(v.F, 'f', -1, 64)
	case Text, JSON:
		return v.S
	case Bytes:
		return fmt.Sprintf("0x%x", v.Raw)
	case DecimalKind:
		return v.D.String()
	case Date:
		return fmt.Sprintf("date(%d)", v.I)
	case Timestamp, Timestamptz:
		return fmt.Sprintf("%s(%d)", v.Kind, v.I)
	}
	return "?"
}

// Trim removes leading and trailing Unicode whitespace (as Rust's str::trim).
func Trim(s string) string {
	return strings.TrimSpace(s)
}
