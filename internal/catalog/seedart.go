package catalog

// The demo catalog's product illustrations, drawn in pure Go at seed time:
// a gradient backdrop, a motif of simple shapes in the category's colours, a
// card with the product's initials and a band with its name. Drawing is
// deterministic (seeded by the product id), so every process draws the same
// picture for the same product.

import (
	"bytes"
	"hash/fnv"
	"image"
	"image/jpeg"
	"math"
	"math/rand/v2"
	"strings"
	"unicode"

	xdraw "golang.org/x/image/draw"
	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Size of a demo product illustration.
const (
	demoWidth  = 800
	demoHeight = 600
	bandTop    = 510 // the name band covers y in [bandTop, demoHeight)
)

type rgba struct{ r, g, b float64 }

func rgb(r, g, b uint8) rgba { return rgba{float64(r), float64(g), float64(b)} }

func (c rgba) mix(o rgba, t float64) rgba {
	return rgba{c.r + (o.r-c.r)*t, c.g + (o.g-c.g)*t, c.b + (o.b-c.b)*t}
}

// palette is a category's colours.
type palette struct {
	top, bottom, side rgba   // backdrop gradient
	accents           []rgba // motif shapes
	ink               rgba   // initials
}

// dark reports whether the backdrop is dark (then the card is dark too).
func (p palette) dark() bool { return p.top.r+p.top.g+p.top.b < 3*100 }

// motif draws a category's shapes over the backdrop, above the name band.
type motif func(c *canvas, p palette, rnd *rand.Rand)

// canvas is an opaque RGBA image with alpha-blending primitives.
type canvas struct {
	img *image.RGBA
}

func newCanvas(w, h int) *canvas { return &canvas{img: image.NewRGBA(image.Rect(0, 0, w, h))} }

func (c *canvas) w() int { return c.img.Rect.Dx() }
func (c *canvas) h() int { return c.img.Rect.Dy() }

// blend paints colour col with opacity a (0..1) over pixel (x, y).
func (c *canvas) blend(x, y int, col rgba, a float64) {
	if a <= 0 || x < 0 || y < 0 || x >= c.w() || y >= c.h() {
		return
	}
	if a > 1 {
		a = 1
	}
	i := y*c.img.Stride + x*4
	p := c.img.Pix[i : i+4 : i+4]
	p[0] = uint8(float64(p[0]) + (col.r-float64(p[0]))*a + 0.5)
	p[1] = uint8(float64(p[1]) + (col.g-float64(p[1]))*a + 0.5)
	p[2] = uint8(float64(p[2]) + (col.b-float64(p[2]))*a + 0.5)
	p[3] = 255
}

// backdrop fills the canvas with a vertical gradient from top to bottom,
// tinted towards side across the width (tilt in [-1, 1] picks the side and
// strength).
func (c *canvas) backdrop(top, bottom, side rgba, tilt float64) {
	w, h := c.w(), c.h()
	tint := make([]float64, w)
	for x := range tint {
		t := float64(x) / float64(w-1)
		if tilt < 0 {
			t = 1 - t
		}
		tint[x] = 0.35 * t * t * math.Abs(tilt)
	}
	for y := range h {
		row := top.mix(bottom, float64(y)/float64(h-1))
		p := c.img.Pix[y*c.img.Stride : y*c.img.Stride+4*w]
		for x, t := range tint {
			col := row.mix(side, t)
			p[4*x+0] = uint8(col.r + 0.5)
			p[4*x+1] = uint8(col.g + 0.5)
			p[4*x+2] = uint8(col.b + 0.5)
			p[4*x+3] = 255
		}
	}
}

func clamp01(v float64) float64 {
	if v < 0 {
		return 0
	}
	if v > 1 {
		return 1
	}
	return v
}

// coverage turns a signed distance from a pixel centre to a shape's edge
// (negative inside) into an anti-aliased pixel coverage.
func coverage(d float64) float64 { return clamp01(0.5 - d) }

// rows calls fn for every pixel row y whose centre is within [y0, y1], with
// dy the distance of the row centre from cy.
func (c *canvas) rows(y0, y1, cy float64, fn func(y int, dy float64)) {
	for y := max(int(math.Floor(y0)), 0); y <= min(int(math.Ceil(y1)), c.h()-1); y++ {
		fn(y, float64(y)+0.5-cy)
	}
}

// circle fills a disc.
func (c *canvas) circle(cx, cy, r float64, col rgba, a float64) {
	c.ring(cx, cy, r/2, r, col, a)
}

// ring draws a circle outline of the given width centred on radius r.
func (c *canvas) ring(cx, cy, r, width float64, col rgba, a float64) {
	ro, ri := r+width/2, r-width/2
	c.rows(cy-ro-1, cy+ro+1, cy, func(y int, dy float64) {
		span := (ro+1)*(ro+1) - dy*dy
		if span <= 0 {
			return
		}
		half := math.Sqrt(span)
		for x := int(cx - half); x <= int(cx+half); x++ {
			dx := float64(x) + 0.5 - cx
			d2 := dx*dx + dy*dy
			if ri > 1 && d2 < (ri-1)*(ri-1) {
				continue // the hole
			}
			var cov float64
			if ri < 0 && d2 < (ro-1)*(ro-1) {
				cov = 1
			} else {
				cov = coverage(math.Abs(math.Sqrt(d2)-r) - width/2)
			}
			c.blend(x, y, col, a*cov)
		}
	})
}

// rect fills the pixels of [x0, x1) x [y0, y1) without anti-aliasing.
func (c *canvas) rect(x0, y0, x1, y1 int, col rgba, a float64) {
	for y := max(y0, 0); y < min(y1, c.h()); y++ {
		for x := max(x0, 0); x < min(x1, c.w()); x++ {
			c.blend(x, y, col, a)
		}
	}
}

// roundRect fills a rectangle with rounded corners, anti-aliased.
func (c *canvas) roundRect(x0, y0, x1, y1, radius float64, col rgba, a float64) {
	mx, my := (x0+x1)/2, (y0+y1)/2
	hx, hy := (x1-x0)/2-radius, (y1-y0)/2-radius
	c.rows(y0-1, y1+1, my, func(y int, dy float64) {
		qy := math.Abs(dy) - hy
		for x := max(int(x0)-1, 0); x <= min(int(x1)+1, c.w()-1); x++ {
			qx := math.Abs(float64(x)+0.5-mx) - hx
			// signed distance to the rounded box
			var d float64
			switch {
			case qx > 0 && qy > 0:
				d = math.Sqrt(qx*qx+qy*qy) - radius
			case qx > qy:
				d = qx - radius
			default:
				d = qy - radius
			}
			c.blend(x, y, col, a*coverage(d))
		}
	})
}

// columns fills, for every x in [x0, x1), from top(x) down to bottom, with an
// anti-aliased top edge. It draws mountains, trees and other silhouettes.
func (c *canvas) columns(x0, x1 int, top func(x float64) float64, bottom int, col rgba, a float64) {
	for x := max(x0, 0); x < min(x1, c.w()); x++ {
		t := top(float64(x) + 0.5)
		if math.IsNaN(t) {
			continue
		}
		for y := max(int(t), 0); y < bottom; y++ {
			c.blend(x, y, col, a*coverage(t-(float64(y)+0.5)))
		}
	}
}

// glyphMask renders s in the 7x13 basic font, one pixel per font pixel,
// cropped to the inked area.
func glyphMask(s string) *image.Alpha {
	face := basicfont.Face7x13
	m := image.NewAlpha(image.Rect(0, 0, 7*len([]rune(s))+2, 13))
	d := font.Drawer{Dst: m, Src: image.Opaque, Face: face, Dot: fixed.P(1, face.Ascent)}
	d.DrawString(s)
	ink := image.Rectangle{}
	for y := 0; y < m.Rect.Dy(); y++ {
		for x := 0; x < m.Rect.Dx(); x++ {
			if m.AlphaAt(x, y).A != 0 {
				ink = ink.Union(image.Rect(x, y, x+1, y+1))
			}
		}
	}
	if ink.Empty() {
		return image.NewAlpha(image.Rect(0, 0, 1, 1))
	}
	return m.SubImage(ink).(*image.Alpha)
}

// text draws s centred on (cx, cy), scaled so that one font pixel is scale
// pixels. The bitmap font is enlarged bilinearly and then sharpened, which
// gives smooth, slightly rounded letters rather than big blocks.
func (c *canvas) text(s string, cx, cy int, scale float64, col rgba, a float64) {
	src := glyphMask(s)
	w := int(float64(src.Rect.Dx()) * scale)
	h := int(float64(src.Rect.Dy()) * scale)
	if w < 1 || h < 1 {
		return
	}
	big := image.NewAlpha(image.Rect(0, 0, w, h))
	xdraw.BiLinear.Scale(big, big.Rect, src, src.Rect, xdraw.Src, nil)
	x0, y0 := cx-w/2, cy-h/2
	for y := range h {
		for x := range w {
			v := float64(big.Pix[y*big.Stride+x]) / 255
			v = math.Max(0, math.Min(1, (v-0.5)*5+0.5)) // sharpen the soft edge
			c.blend(x0+x, y0+y, col, a*v)
		}
	}
}

// initials are the first letters of a name's first two words, leaving out
// little words: "Cast Iron Skillet" -> "CI", "The Art of Slow Cooking" -> "AS".
func initials(name string) string {
	var out []rune
	for _, w := range strings.FieldsFunc(name, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
		switch strings.ToLower(w) {
		case "a", "an", "the", "of", "for", "and":
			continue
		}
		r := []rune(w)[0]
		if r > unicode.MaxASCII {
			continue // the basic font is ASCII only
		}
		out = append(out, unicode.ToUpper(r))
		if len(out) == 2 {
			break
		}
	}
	if len(out) == 0 {
		return "?"
	}
	return string(out)
}

// seedFor derives a deterministic random source from a product id.
func seedFor(id string) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(id))
	s := h.Sum64()
	return rand.New(rand.NewPCG(s, s^0x9E3779B97F4A7C15))
}

// renderProduct draws a product's illustration and encodes it as JPEG.
func renderProduct(id, name string, p palette, m motif) ([]byte, error) {
	rnd := seedFor(id)
	c := newCanvas(demoWidth, demoHeight)
	c.backdrop(p.top, p.bottom, p.side, rnd.Float64()*2-1)
	m(c, p, rnd)

	// The card, with a soft shadow, and the initials on it.
	const cx0, cy0, cx1, cy1 = 230, 110, 570, 390
	for i := 3; i >= 1; i-- {
		g := float64(i) * 6
		c.roundRect(cx0-g+4, cy0-g+14, cx1+g+4, cy1+g+14, 30+g, rgba{}, 0.05)
	}
	card, cardA := rgb(0xFF, 0xFD, 0xF8), 0.95
	if p.dark() {
		card, cardA = rgb(0x10, 0x1C, 0x33), 0.92
	}
	c.roundRect(cx0, cy0, cx1, cy1, 30, card, cardA)
	accent := p.accents[rnd.IntN(len(p.accents))]
	c.roundRect(cx0+24, cy1-34, cx1-24, cy1-26, 4, accent, 0.9)
	c.text(initials(name), (cx0+cx1)/2+4, (cy0+cy1)/2-14, 17, rgba{}, 0.12) // shadow
	c.text(initials(name), (cx0+cx1)/2, (cy0+cy1)/2-18, 17, p.ink, 1)

	// The name band.
	c.rect(0, bandTop, demoWidth, demoHeight, rgb(0x11, 0x14, 0x1C), 0.78)
	c.rect(0, bandTop, demoWidth, bandTop+4, accent, 1)
	scale := math.Min(3.4, float64(demoWidth-60)/float64(7*len(name)))
	c.text(name, demoWidth/2, (bandTop+demoHeight)/2+2, scale, rgb(0xFA, 0xFA, 0xF7), 1)

	var buf bytes.Buffer
	buf.Grow(64 << 10)
	if err := jpeg.Encode(&buf, c.img, &jpeg.Options{Quality: 85}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// motifHome: plates and bowls seen from above, on a wooden table top.
func motifHome(c *canvas, p palette, rnd *rand.Rand) {
	for range 60 { // a faint polka-dot wallpaper
		c.circle(rnd.Float64()*demoWidth, rnd.Float64()*360, 3+rnd.Float64()*4, p.accents[0], 0.12)
	}
	wood := p.accents[0].mix(rgb(0x5A, 0x34, 0x22), 0.55)
	c.rect(0, 380, demoWidth, bandTop, wood, 0.6)
	for y := 392; y < bandTop; y += 14 + rnd.IntN(10) { // grain
		c.rect(0, y, demoWidth, y+2, rgb(0x3B, 0x22, 0x16), 0.15)
	}
	for range 5 {
		x := 60 + rnd.Float64()*680
		y := 80 + rnd.Float64()*360
		r := 50 + rnd.Float64()*70
		col := p.accents[rnd.IntN(len(p.accents))]
		c.circle(x+6, y+10, r, rgba{}, 0.12)
		c.circle(x, y, r, col, 0.85)
		c.circle(x, y, r*0.72, col.mix(rgb(0xFF, 0xFF, 0xFF), 0.35), 0.9)
		c.ring(x, y, r*0.72, 3, col.mix(rgba{}, 0.2), 0.4)
	}
}

// motifOutdoors: a sun over layered mountain ridges and a line of pines.
func motifOutdoors(c *canvas, p palette, rnd *rand.Rand) {
	sx, sy := 80+rnd.Float64()*640, 70+rnd.Float64()*60
	sun := rgb(0xFF, 0xC8, 0x57)
	for i := 3; i >= 1; i-- {
		c.circle(sx, sy, 40+float64(i)*18, sun, 0.12)
	}
	c.circle(sx, sy, 40, sun, 1)
	for layer := range 3 {
		type peak struct{ x, y, slope float64 }
		var peaks []peak
		for range 3 + rnd.IntN(3) {
			peaks = append(peaks, peak{rnd.Float64() * demoWidth, 150 + float64(layer)*70 + rnd.Float64()*80, 0.6 + rnd.Float64()*0.5})
		}
		base := 330 + float64(layer)*45
		ridge := func(x float64) float64 {
			y := base
			for _, pk := range peaks {
				y = math.Min(y, pk.y+pk.slope*math.Abs(x-pk.x))
			}
			return y
		}
		col := p.accents[2-layer].mix(p.top, 0.45-float64(layer)*0.2)
		c.columns(0, demoWidth, ridge, bandTop, col, 1)
		if layer == 0 { // snow on the far peaks
			for _, pk := range peaks {
				c.columns(int(pk.x-40), int(pk.x+40), func(x float64) float64 {
					if ridge(x) < pk.y+pk.slope*math.Abs(x-pk.x)-0.5 {
						return math.NaN()
					}
					return pk.y + pk.slope*math.Abs(x-pk.x)
				}, int(pk.y+24), rgb(0xFF, 0xFF, 0xFF), 0.85)
			}
		}
	}
	for x := -10.0; x < demoWidth+10; x += 28 + rnd.Float64()*40 {
		h := 60 + rnd.Float64()*70
		w := h * 0.42
		base := float64(bandTop) - rnd.Float64()*12
		cx := x
		c.columns(int(cx-w), int(cx+w)+1, func(x float64) float64 {
			return base - h + math.Abs(x-cx)*h/w
		}, int(base), p.accents[3], 1)
	}
}

// motifElectronics: a circuit board with traces, pads and glowing rings.
func motifElectronics(c *canvas, p palette, rnd *rand.Rand) {
	grid := p.accents[0]
	for x := 20; x < demoWidth; x += 40 {
		c.rect(x, 0, x+1, bandTop, grid, 0.07)
	}
	for y := 20; y < bandTop; y += 40 {
		c.rect(0, y, demoWidth, y+1, grid, 0.07)
	}
	cx, cy := 400.0, 250.0
	for i := range 4 {
		c.ring(cx, cy, 200+float64(i)*45, 2, p.accents[i%2], 0.25-float64(i)*0.05)
	}
	for range 14 {
		col := p.accents[rnd.IntN(len(p.accents))]
		x := float64(20 + 40*rnd.IntN(20))
		y := float64(20 + 40*rnd.IntN(12))
		for range 2 + rnd.IntN(3) {
			n := float64(40 * (1 + rnd.IntN(4)))
			nx, ny := x, y
			if rnd.IntN(2) == 0 {
				nx += n * float64(1-2*rnd.IntN(2))
			} else {
				ny += n * float64(1-2*rnd.IntN(2))
			}
			nx = math.Max(20, math.Min(780, nx))
			ny = math.Max(20, math.Min(bandTop-20, ny))
			c.roundRect(math.Min(x, nx)-1.5, math.Min(y, ny)-1.5, math.Max(x, nx)+1.5, math.Max(y, ny)+1.5, 1.5, col, 0.7)
			x, y = nx, ny
		}
		c.circle(x, y, 7, col, 0.9)
		c.circle(x, y, 3, p.top, 1)
	}
}

// motifBooks: a shelf of book spines, with the odd stack lying flat, under
// a striped wallpaper.
func motifBooks(c *canvas, p palette, rnd *rand.Rand) {
	for y := 0; y < 300; y += 24 {
		c.rect(0, y, demoWidth, y+10, p.side, 0.12)
	}
	const shelf = 470
	band := rgb(0xE9, 0xC4, 0x6A)
	x := 20 + rnd.Float64()*30
	for x < demoWidth-40 {
		if rnd.IntN(7) == 0 && x < demoWidth-140 { // a stack lying flat
			y := float64(shelf)
			for range 3 + rnd.IntN(2) {
				w := 90 + rnd.Float64()*30
				h := 18 + rnd.Float64()*10
				off := rnd.Float64() * 12
				col := p.accents[rnd.IntN(len(p.accents))]
				c.roundRect(x+off, y-h, x+off+w, y, 3, col, 1)
				c.roundRect(x+off+w-16, y-h+4, x+off+w-11, y-4, 1, band, 0.9)
				y -= h + 1
			}
			x += 140
			continue
		}
		w := 30 + rnd.Float64()*36
		h := 140 + rnd.Float64()*150
		col := p.accents[rnd.IntN(len(p.accents))].mix(p.top, rnd.Float64()*0.2)
		c.roundRect(x, shelf-h, x+w, shelf, 3, col, 1)
		c.roundRect(x+4, shelf-h+18, x+w-4, shelf-h+24, 1, band, 0.9)
		c.roundRect(x+4, shelf-30, x+w-4, shelf-25, 1, band, 0.9)
		x += w + 3 + rnd.Float64()*4
	}
	wood := rgb(0x7F, 0x55, 0x39)
	c.rect(0, shelf, demoWidth, shelf+22, wood, 1)
	c.rect(0, shelf+22, demoWidth, shelf+28, wood.mix(rgba{}, 0.4), 1)
}
