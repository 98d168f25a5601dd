// Package transform writes cdc-host transforms in Go over row-style change events.
//
// The host hands a plugin batches of change events column by column (wit/transform.wit, world
// cdc:transform/transform@0.1.0). This package hides that: register a Plugin (its Description and a
// Configure function returning a Transform) in an init function, and implement Transform.Apply for
// one Event, returning Keep(), Drop() or Reject(reason). The component build (scripts/build-plugins,
// or `cdc-host plugin new --lang go`) adds the export glue (glue/export.go.in) that converts the
// wit-bindgen types to this package's batch types without copying column data.
//
// Process runs the same batch loop natively, so plugins are unit-tested with `go test`.
package transform

import (
	"encoding/binary"
	"fmt"
	"unsafe"
)

// Op is the kind of change an event describes.
type Op uint8

// The operations (the WIT enum's values).
const (
	Create Op = iota
	Update
	Delete
	Read
	Truncate
)

// ColumnDef is a column the plugin writes.
type ColumnDef struct {
	Name      string
	Kind      Kind
	Precision uint8 // decimals only
	Scale     uint8 // decimals only
	Doc       string
}

// TextColumn declares a text write column.
func TextColumn(name, doc string) ColumnDef { return ColumnDef{Name: name, Kind: Text, Doc: doc} }

// Description says what the plugin is and which columns it reads ("*": all), writes and removes.
type Description struct {
	Name        string
	Version     string
	Reads       []string
	ReadsBefore bool
	Writes      []ColumnDef
	Removes     []string
}

// OutcomeKind is what happens to an event.
type OutcomeKind uint8

// The outcomes (the WIT variant's tags).
const (
	KeepKind OutcomeKind = iota
	DropKind
	RejectKind
)

// Outcome is what happens to one event.
type Outcome struct {
	Kind   OutcomeKind
	Reason string
}

// Keep keeps the event, with the plugin's writes applied.
func Keep() Outcome { return Outcome{Kind: KeepKind} }

// Drop filters the event out on purpose (counted, not an error).
func Drop() Outcome { return Outcome{Kind: DropKind} }

// Reject refuses the event: it goes to the dead-letter table with the formatted reason.
func Reject(format string, args ...any) Outcome {
	if len(args) == 0 {
		return Outcome{Kind: RejectKind, Reason: format}
	}
	return Outcome{Kind: RejectKind, Reason: fmt.Sprintf(format, args...)}
}

// Config is the plugin's key/value configuration (values are strings, as the host passes them).
type Config map[string]string

// Get returns the value of key, or fallback when unset.
func (c Config) Get(key, fallback string) string {
	if v, ok := c[key]; ok {
		return v
	}
	return fallback
}

// Flag reads a boolean (true/false, yes/no, on/off, 1/0, any case); fallback when unset.
func (c Config) Flag(key string, fallback bool) (bool, error) {
	raw, ok := c[key]
	if !ok {
		return fallback, nil
	}
	switch lower(Trim(raw)) {
	case "true", "yes", "on", "1":
		return true, nil
	case "false", "no", "off", "0":
		return false, nil
	}
	return false, fmt.Errorf("config key `%s`: invalid value `%s`: expected true or false", key, raw)
}

// Decimal reads an exact decimal; fallback when unset.
func (c Config) Decimal(key string, fallback Decimal) (Decimal, error) {
	raw, ok := c[key]
	if !ok {
		return fallback, nil
	}
	d, err := ParseDecimal(raw)
	if err != nil {
		return Decimal{}, fmt.Errorf("config key `%s`: invalid value `%s`: %v", key, raw, err)
	}
	return d, nil
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// Transform decides what happens to each event.
type Transform interface {
	// Apply decides for one event, setting declared write columns on the way.
	Apply(e *Event) Outcome
}

// Plugin is what a plugin package registers.
type Plugin struct {
	// Description must not depend on configuration (the host asks for it before configuring).
	Description Description
	// Configure builds the transform; an error names the key and the bad value.
	Configure func(c Config) (Transform, error)
}

var registered *Plugin

// Register makes p the plugin of this component; call it from an init function.
func Register(p Plugin) { registered = &p }

// Registered is the registered plugin (nil before Register).
func Registered() *Plugin { return registered }

// LogLevel is a host log level.
type LogLevel uint8

// The log levels (the WIT enum's values).
const (
	LogTrace LogLevel = iota
	LogDebug
	LogInfo
	LogWarn
	LogError
)

// LogWriter is where Log writes; the component glue sets it to the WIT log import.
var LogWriter = func(level LogLevel, message string) {}

// Log writes a line to the host log (configuration and batch-level messages, not per event).
func Log(level LogLevel, format string, args ...any) { LogWriter(level, fmt.Sprintf(format, args...)) }

// ---- the batch, as the glue hands it over ----

// Column is one column of a batch. Kind says which slice holds the values: Bools, Int32s (Int32,
// Date), Int64s (Int64, Timestamp, Timestamptz), Float64s, Offsets+Data (Text, Bytes, JSON) or Data
// with 16 little-endian bytes per value (DecimalKind, with Precision and Scale).
type Column struct {
	Name      string
	Present   []bool
	Kind      Kind
	Bools     []bool
	Int32s    []int32
	Int64s    []int64
	Float64s  []float64
	Offsets   []uint32
	Data      []byte
	Precision uint8
	Scale     uint8
}

// SourceInfo is where one change came from (Table indexes Batch.Tables).
type SourceInfo struct {
	Table    uint32
	HasLsn   bool
	Lsn      int64
	HasTxid  bool
	Txid     int64
	TsMs     int64
	Snapshot bool
}

// TableRef is a source table.
type TableRef struct{ Schema, Table string }

// Batch is a batch of change events, column by column.
type Batch struct {
	Ops     []Op
	Sources []SourceInfo
	Tables  []TableRef
	After   []Column
	Before  []Column
}

// Output is the result of one batch: one outcome per event, one column per declared write.
type Output struct {
	Outcomes []Outcome
	Writes   []Column
}

// Source is where an event came from.
type Source struct {
	Schema, Table string
	SourceInfo
}

// ---- events ----

type writer struct {
	def *ColumnDef
	col Column
}

type batchView struct {
	b        *Batch
	desc     *Description
	readsAll bool
	writers  []writer
}

// Event is one change event of a batch, as a row. Reading a column the description does not
// declare, or setting one it does not write, rejects the event with a message naming the column.
type Event struct {
	v   *batchView
	row int
	err string
}

func (e *Event) fail(format string, args ...any) {
	if e.err == "" {
		e.err = fmt.Sprintf(format, args...)
	}
}

// Op is the operation.
func (e *Event) Op() Op { return e.v.b.Ops[e.row] }

// Source is where the event came from.
func (e *Event) Source() Source {
	s := e.v.b.Sources[e.row]
	out := Source{SourceInfo: s}
	if int(s.Table) < len(e.v.b.Tables) {
		t := e.v.b.Tables[s.Table]
		out.Schema, out.Table = t.Schema, t.Table
	}
	return out
}

func (e *Event) declared(name string) bool {
	if e.v.readsAll {
		return true
	}
	for _, r := range e.v.desc.Reads {
		if r == name {
			return true
		}
	}
	return false
}

func columnValue(c *Column, row int) Value {
	if !c.Present[row] {
		return NullValue
	}
	v := Value{Kind: c.Kind}
	switch c.Kind {
	case Boolean:
		v.B = c.Bools[row]
	case Int32, Date:
		v.I = int64(c.Int32s[row])
	case Int64, Timestamp, Timestamptz:
		v.I = c.Int64s[row]
	case Float64:
		v.F = c.Float64s[row]
	case Text, JSON, Bytes:
		b := c.Data[c.Offsets[row]:c.Offsets[row+1]]
		if c.Kind == Bytes {
			v.Raw = b
		} else if len(b) > 0 {
			v.S = unsafe.String(&b[0], len(b))
		}
	case DecimalKind:
		raw := c.Data[16*row : 16*row+16]
		v.D = Decimal{Lo: binary.LittleEndian.Uint64(raw), Hi: int64(binary.LittleEndian.Uint64(raw[8:])),
			Precision: c.Precision, Scale: c.Scale}
	default:
		return NullValue
	}
	return v
}

func (e *Event) image(cols []Column, name string) Value {
	for i := range cols {
		if cols[i].Name == name {
			return columnValue(&cols[i], e.row)
		}
	}
	if !e.declared(name) {
		e.fail("column `%s` is not declared in reads", name)
	}
	return NullValue
}

// Get is the after-image value of name (NullValue when null or absent).
func (e *Event) Get(name string) Value { return e.image(e.v.b.After, name) }

// Before is the before-image value of name (needs ReadsBefore).
func (e *Event) Before(name string) Value {
	if !e.v.desc.ReadsBefore {
		e.fail("before image of `%s` read, but ReadsBefore is not declared", name)
		return NullValue
	}
	return e.image(e.v.b.Before, name)
}

// Text is the text of name; false when null, absent or not text. The string points into the batch.
func (e *Event) Text(name string) (string, bool) {
	v := e.Get(name)
	return v.S, v.Kind == Text
}

func (e *Event) writer(name string) *writer {
	for i := range e.v.writers {
		if e.v.writers[i].def.Name == name {
			return &e.v.writers[i]
		}
	}
	e.fail("column `%s` is not declared in writes", name)
	return nil
}

// Set sets the declared write column name (NullValue for null). A value of another kind than
// declared rejects the event (integers are accepted for decimal columns).
func (e *Event) Set(name string, v Value) {
	w := e.writer(name)
	if w == nil {
		return
	}
	c := &w.col
	if v.Kind == Null {
		c.Present[e.row] = false
		if c.Offsets != nil {
			c.Data = c.Data[:c.Offsets[e.row]]
		}
		return
	}
	if w.def.Kind == DecimalKind && (v.Kind == Int32 || v.Kind == Int64) {
		v = DecimalValue(DecimalFromInt64(v.I))
	}
	if v.Kind != w.def.Kind {
		e.fail("column `%s` is declared %s, set to a %s value", name, w.def.Kind, v.Kind)
		return
	}
	row := e.row
	switch v.Kind {
	case Text, JSON:
		c.Data = append(c.Data[:c.Offsets[row]], v.S...)
	case Bytes:
		c.Data = append(c.Data[:c.Offsets[row]], v.Raw...)
	case Boolean:
		c.Bools[row] = v.B
	case Int32, Date:
		c.Int32s[row] = int32(v.I)
	case Int64, Timestamp, Timestamptz:
		c.Int64s[row] = v.I
	case Float64:
		c.Float64s[row] = v.F
	case DecimalKind:
		d := v.D
		if d.Scale > w.def.Scale {
			e.fail("column `%s`: %s has more than %d fractional digits", name, d, w.def.Scale)
			return
		}
		d = d.Rescale(w.def.Scale)
		binary.LittleEndian.PutUint64(c.Data[16*row:], d.Lo)
		binary.LittleEndian.PutUint64(c.Data[16*row+8:], uint64(d.Hi))
	}
	c.Present[row] = true
}

// SetText sets a text write column.
func (e *Event) SetText(name, s string) { e.Set(name, TextValue(s)) }

// SetJoined sets a text write column to parts joined with sep; null when there are no parts.
func (e *Event) SetJoined(name string, parts []string, sep string) {
	w := e.writer(name)
	if w == nil {
		return
	}
	if w.def.Kind != Text {
		e.fail("column `%s` is declared %s, set to a text value", name, w.def.Kind)
		return
	}
	c := &w.col
	c.Data = c.Data[:c.Offsets[e.row]]
	c.Present[e.row] = len(parts) > 0
	for i, p := range parts {
		if i > 0 {
			c.Data = append(c.Data, sep...)
		}
		c.Data = append(c.Data, p...)
	}
}

func newWriter(def *ColumnDef, n int) writer {
	c := Column{Name: def.Name, Kind: def.Kind, Present: make([]bool, n), Precision: def.Precision, Scale: def.Scale}
	switch def.Kind {
	case Text, JSON, Bytes:
		c.Offsets = make([]uint32, n+1)
		c.Data = make([]byte, 0, 16*n)
	case Boolean:
		c.Bools = make([]bool, n)
	case Int32, Date:
		c.Int32s = make([]int32, n)
	case Int64, Timestamp, Timestamptz:
		c.Int64s = make([]int64, n)
	case Float64:
		c.Float64s = make([]float64, n)
	case DecimalKind:
		c.Data = make([]byte, 16*n)
	}
	return writer{def: def, col: c}
}

// Process runs t over one batch exactly as the component does: one outcome per event, one column
// per declared write. A mistake (undeclared column, wrong kind) rejects the event naming it.
func Process(t Transform, desc *Description, b *Batch) Output {
	n := len(b.Ops)
	v := &batchView{b: b, desc: desc}
	for _, r := range desc.Reads {
		if r == "*" {
			v.readsAll = true
		}
	}
	v.writers = make([]writer, len(desc.Writes))
	for i := range desc.Writes {
		v.writers[i] = newWriter(&desc.Writes[i], n)
	}
	outcomes := make([]Outcome, n)
	e := Event{v: v}
	for row := 0; row < n; row++ {
		e.row, e.err = row, ""
		var o Outcome
		if t == nil {
			o = Reject("plugin is not configured: configure did not succeed")
		} else {
			o = t.Apply(&e)
		}
		if e.err != "" {
			if o.Kind == RejectKind {
				o.Reason = e.err + "; " + o.Reason
			} else {
				o = Outcome{Kind: RejectKind, Reason: e.err}
			}
			for i := range v.writers {
				c := &v.writers[i].col
				c.Present[row] = false
				if c.Offsets != nil {
					c.Data = c.Data[:c.Offsets[row]]
				}
			}
		}
		outcomes[row] = o
		for i := range v.writers {
			c := &v.writers[i].col
			if c.Offsets != nil {
				c.Offsets[row+1] = uint32(len(c.Data))
			}
		}
	}
	writes := make([]Column, len(v.writers))
	for i := range v.writers {
		writes[i] = v.writers[i].col
	}
	return Output{Outcomes: outcomes, Writes: writes}
}
