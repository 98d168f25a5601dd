package transform

import (
	"encoding/binary"
	"strings"
	"testing"
)

func textColumn(name string, values []*string) Column {
	c := Column{Name: name, Kind: Text, Present: make([]bool, len(values)), Offsets: make([]uint32, len(values)+1)}
	for i, v := range values {
		if v != nil {
			c.Present[i] = true
			c.Data = append(c.Data, *v...)
		}
		c.Offsets[i+1] = uint32(len(c.Data))
	}
	return c
}

func decimalColumn(name string, scale uint8, values []int64) Column {
	c := Column{Name: name, Kind: DecimalKind, Present: make([]bool, len(values)), Data: make([]byte, 16*len(values)), Scale: scale, Precision: 12}
	for i, v := range values {
		c.Present[i] = true
		d := DecimalFromInt64(v)
		binary.LittleEndian.PutUint64(c.Data[16*i:], d.Lo)
		binary.LittleEndian.PutUint64(c.Data[16*i+8:], uint64(d.Hi))
	}
	return c
}

type upper struct{}

func (upper) Apply(e *Event) Outcome {
	s, ok := e.Text("a")
	if !ok {
		return Reject("missing a")
	}
	if s == "undeclared" {
		e.SetText("zzz", s)
	}
	d := e.Get("d")
	if d.Kind == DecimalKind && d.D.Negative() {
		return Reject("d %s is negative", d)
	}
	e.SetJoined("b", []string{strings.ToUpper(s), "!"}, " ")
	return Keep()
}

func str(s string) *string { return &s }

func TestProcess(t *testing.T) {
	desc := Description{Name: "upper", Version: "1", Reads: []string{"a", "d"}, Writes: []ColumnDef{TextColumn("b", "")}}
	b := &Batch{
		Ops:     []Op{Create, Update, Create, Create},
		Sources: make([]SourceInfo, 4),
		Tables:  []TableRef{{"public", "t"}},
		After: []Column{
			textColumn("a", []*string{str("x"), nil, str("undeclared"), str("ü")}),
			decimalColumn("d", 2, []int64{150, 0, 0, -4250}),
		},
	}
	out := Process(upper{}, &desc, b)
	if len(out.Outcomes) != 4 || len(out.Writes) != 1 {
		t.Fatalf("shape: %+v", out)
	}
	want := []Outcome{Keep(), Reject("missing a"), Reject("column `zzz` is not declared in writes"), Reject("d -42.50 is negative")}
	for i, w := range want {
		if out.Outcomes[i] != w {
			t.Errorf("outcome %d: %+v, want %+v", i, out.Outcomes[i], w)
		}
	}
	c := out.Writes[0]
	if got := string(c.Data[c.Offsets[0]:c.Offsets[1]]); got != "X !" || !c.Present[0] {
		t.Errorf("b[0] = %q", got)
	}
	for i := 1; i < 4; i++ {
		if c.Present[i] || c.Offsets[i+1] != c.Offsets[i] {
			t.Errorf("b[%d] should be null", i)
		}
	}
}

func TestDecimals(t *testing.T) {
	for _, tc := range []struct{ in, out string }{{"-42.50", "-42.50"}, {" 0.005 ", "0.005"}, {"+7", "7"}, {"-0.01", "-0.01"}, {"123456789012345678901234.5", "123456789012345678901234.5"}} {
		d, err := ParseDecimal(tc.in)
		if err != nil || d.String() != tc.out {
			t.Errorf("%q: %v %v", tc.in, d, err)
		}
	}
	for _, bad := range []string{"", ".", "1e5", "abc", "--1"} {
		if _, err := ParseDecimal(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	a, _ := ParseDecimal("99.99")
	b, _ := ParseDecimal("100")
	if a.Cmp(b) != -1 || b.Cmp(a) != 1 || a.Cmp(a) != 0 {
		t.Error("compare across scales")
	}
	n, _ := ParseDecimal("-123456789012345678901234.5")
	if n.Cmp(Decimal{}) != -1 || !n.Negative() {
		t.Error("large negative")
	}
	if Trim("\u00a0 x\u3000") != "x" {
		t.Error("trim")
	}
}

func TestConfig(t *testing.T) {
	c := Config{"flag": "Yes", "bad": "2", "min": "-10"}
	if v, err := c.Flag("flag", false); !v || err != nil {
		t.Error("flag")
	}
	if _, err := c.Flag("bad", false); err == nil || !strings.Contains(err.Error(), "`2`") {
		t.Error("bad flag")
	}
	if d, err := c.Decimal("min", Decimal{}); err != nil || d.String() != "-10" {
		t.Error("decimal")
	}
	if c.Get("missing", "dflt") != "dflt" {
		t.Error("get")
	}
}
