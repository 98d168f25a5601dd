// Package nameconcat is `name-concat`: full_name = first_name + separator + last_name (Go port of
// plugins/name-concat). Each part is trimmed; null or blank parts are skipped; when no part is left,
// full_name is null. first_name and last_name are removed. Config: `separator` (default " ").
package nameconcat

import "cdchost/transform"

// NameConcat joins the name parts.
type NameConcat struct {
	Separator string
	parts     []string
}

// Apply sets full_name.
func (p *NameConcat) Apply(e *transform.Event) transform.Outcome {
	p.parts = p.parts[:0]
	for _, c := range [...]string{"first_name", "last_name"} {
		if s, ok := e.Text(c); ok {
			if s = transform.Trim(s); s != "" {
				p.parts = append(p.parts, s)
			}
		}
	}
	e.SetJoined("full_name", p.parts, p.Separator)
	return transform.Keep()
}

// Plugin is the registered plugin.
var Plugin = transform.Plugin{
	Description: transform.Description{
		Name:    "name-concat",
		Version: "0.1.0",
		Reads:   []string{"first_name", "last_name"},
		Writes:  []transform.ColumnDef{transform.TextColumn("full_name", "first_name and last_name, trimmed and joined")},
		Removes: []string{"first_name", "last_name"},
	},
	Configure: func(c transform.Config) (transform.Transform, error) {
		return &NameConcat{Separator: c.Get("separator", " ")}, nil
	},
}

func init() { transform.Register(Plugin) }
