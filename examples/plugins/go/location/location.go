// Package location is `location`: location = "city, state, country" (Go port of plugins/location).
// Each part is trimmed; null or blank parts are skipped; when no part is left, location is null.
// city, state and country are removed. Config: `separator` (default ", ").
package location

import "cdchost/transform"

// Location joins the location parts.
type Location struct {
	Separator string
	parts     []string
}

// Apply sets location.
func (p *Location) Apply(e *transform.Event) transform.Outcome {
	p.parts = p.parts[:0]
	for _, c := range [...]string{"city", "state", "country"} {
		if s, ok := e.Text(c); ok {
			if s = transform.Trim(s); s != "" {
				p.parts = append(p.parts, s)
			}
		}
	}
	e.SetJoined("location", p.parts, p.Separator)
	return transform.Keep()
}

// Plugin is the registered plugin.
var Plugin = transform.Plugin{
	Description: transform.Description{
		Name:    "location",
		Version: "0.1.0",
		Reads:   []string{"city", "state", "country"},
		Writes:  []transform.ColumnDef{transform.TextColumn("location", "city, state and country, trimmed and joined")},
		Removes: []string{"city", "state", "country"},
	},
	Configure: func(c transform.Config) (transform.Transform, error) {
		return &Location{Separator: c.Get("separator", ", ")}, nil
	},
}

func init() { transform.Register(Plugin) }
