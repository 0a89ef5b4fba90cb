package catalog

import (
	"context"
	"runtime"
	"sync"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/money"
)

// demoCategory is a category of the demo catalog with the colours its
// product illustrations are drawn in.
type demoCategory struct {
	Category
	palette palette
	motif   motif
}

// demoProduct is one product of the demo catalog.
type demoProduct struct {
	id          string // stable: the guard against seeding twice
	category    string
	name        string
	description string
	cents       int64
	stock       int
}

var demoCategories = []demoCategory{
	{Category{ID: "home", Name: "Home & Kitchen"}, palette{
		top: rgb(0xF6, 0xE7, 0xD3), bottom: rgb(0xE8, 0xB8, 0x9A), side: rgb(0xF2, 0xCC, 0x8F),
		accents: []rgba{rgb(0xE0, 0x7A, 0x5F), rgb(0x81, 0xB2, 0x9A), rgb(0xF2, 0xCC, 0x8F), rgb(0x3D, 0x40, 0x5B)},
		ink:     rgb(0x9C, 0x3D, 0x28),
	}, motifHome},
	{Category{ID: "outdoors", Name: "Outdoors"}, palette{
		top: rgb(0xBF, 0xE3, 0xF0), bottom: rgb(0xE9, 0xF5, 0xDB), side: rgb(0xFF, 0xE0, 0xA8),
		accents: []rgba{rgb(0x2D, 0x6A, 0x4F), rgb(0x40, 0x91, 0x6C), rgb(0x74, 0xC6, 0x9D), rgb(0x1B, 0x43, 0x32)},
		ink:     rgb(0x1B, 0x43, 0x32),
	}, motifOutdoors},
	{Category{ID: "electronics", Name: "Electronics"}, palette{
		top: rgb(0x0D, 0x1B, 0x2A), bottom: rgb(0x1B, 0x26, 0x3B), side: rgb(0x3A, 0x0C, 0xA3),
		accents: []rgba{rgb(0x00, 0xB4, 0xD8), rgb(0x90, 0xE0, 0xEF), rgb(0x72, 0x09, 0xB7), rgb(0xF7, 0x25, 0x85)},
		ink:     rgb(0x00, 0x77, 0xB6),
	}, motifElectronics},
	{Category{ID: "books", Name: "Books"}, palette{
		top: rgb(0xF2, 0xE8, 0xCF), bottom: rgb(0xE3, 0xD5, 0xB8), side: rgb(0xD4, 0xA3, 0x73),
		accents: []rgba{rgb(0x6D, 0x2E, 0x46), rgb(0xA2, 0x63, 0x69), rgb(0xD4, 0xA3, 0x73), rgb(0x38, 0x6F, 0x6F), rgb(0x2F, 0x3E, 0x46)},
		ink:     rgb(0x6D, 0x2E, 0x46),
	}, motifBooks},
}

var demoProducts = []demoProduct{
	{"prd_home_01", "home", "Ceramic Pour-Over Coffee Dripper", "A hand-glazed ceramic dripper for slow, clean pour-over coffee. Fits most mugs and carafes.", 2400, 30},
	{"prd_home_02", "home", "Cast Iron Skillet", "A pre-seasoned 10-inch cast iron pan that goes from stovetop to oven. Sears steak and bakes cornbread equally well.", 3950, 20},
	{"prd_home_03", "home", "Linen Tea Towel Set", "Three stonewashed linen kitchen towels, soft and highly absorbent. Machine washable.", 1800, 45},
	{"prd_home_04", "home", "Bamboo Cutting Board", "A large bamboo chopping board with a juice groove that is gentle on knife edges.", 2700, 35},
	{"prd_home_05", "home", "Glass Storage Jars", "A set of four airtight glass jars with bamboo lids for pantry staples like rice, pasta and flour.", 3200, 25},
	{"prd_home_06", "home", "Merino Wool Throw Blanket", "A warm herringbone throw in merino wool for the sofa or the foot of the bed.", 7900, 12},
	{"prd_home_07", "home", "Brass Table Lamp", "A warm brass table lamp with a linen shade. Dimmable LED bulb included.", 6400, 9},

	{"prd_outdoors_01", "outdoors", "Ultralight Two-Person Tent", "A freestanding backpacking tent under 2 kg, with a waterproof rainfly and two doors.", 24900, 8},
	{"prd_outdoors_02", "outdoors", "Insulated Water Bottle", "A double-wall stainless steel bottle that keeps water cold for 24 hours and coffee hot for 12.", 2900, 50},
	{"prd_outdoors_03", "outdoors", "Trekking Poles", "A pair of collapsible aluminium hiking poles with cork grips and carbide tips.", 5900, 22},
	{"prd_outdoors_04", "outdoors", "Down Sleeping Bag", "A mummy sleeping bag rated to -5 C, filled with responsibly sourced duck down. Packs small for camping.", 18900, 10},
	{"prd_outdoors_05", "outdoors", "Rechargeable Headlamp", "A 350-lumen LED headlamp with a red night mode and USB-C charging, for camping and night hikes.", 3400, 40},
	{"prd_outdoors_06", "outdoors", "Waterproof Hiking Boots", "Leather hiking boots with a waterproof membrane and grippy rubber soles for rocky trails.", 14900, 15},

	{"prd_electronics_01", "electronics", "Noise-Cancelling Headphones", "Wireless over-ear Bluetooth headphones with active noise cancellation and 30 hours of battery life.", 19900, 18},
	{"prd_electronics_02", "electronics", "Mechanical Keyboard", "A compact 75% keyboard with hot-swappable tactile switches and a detachable USB-C cable.", 11900, 20},
	{"prd_electronics_03", "electronics", "Portable Bluetooth Speaker", "A rugged waterproof speaker with rich bass, made for the beach or the campsite.", 7900, 30},
	{"prd_electronics_04", "electronics", "USB-C Charging Hub", "A 65 W charger with four ports that powers a laptop, a phone and a tablet at once.", 4500, 40},
	{"prd_electronics_05", "electronics", "Backlit E-Reader", "A glare-free 6-inch e-ink reader with an adjustable warm light and weeks of battery.", 12900, 14},
	{"prd_electronics_06", "electronics", "Smart LED Desk Lamp", "A dimmable desk lamp with adjustable colour temperature and a wireless phone charger in its base.", 6900, 25},

	{"prd_books_01", "books", "The Art of Slow Cooking", "A cookbook of 120 braises, stews and soups that reward patience. Hardcover, with photographs.", 3499, 20},
	{"prd_books_02", "books", "Trails of the Pacific Northwest", "A hiking guide to 75 day hikes, with maps, elevation profiles and camping tips.", 2495, 16},
	{"prd_books_03", "books", "Practical Distributed Systems", "An engineer's guide to reliable services: queues, retries, idempotency and consensus, explained with examples.", 4900, 12},
	{"prd_books_04", "books", "The Lighthouse Keeper", "A quiet novel about a keeper, a winter storm and the letters that wash ashore. Paperback.", 1600, 30},
	{"prd_books_05", "books", "Stargazing for Beginners", "Find planets, constellations and galaxies with binoculars or a small telescope, month by month.", 2150, 24},
	{"prd_books_06", "books", "A Short History of Coffee", "From the Ethiopian highlands to espresso bars: the story of the bean that changed the world.", 1899, 28},
}

// Seed fills an empty catalog with the demo categories and products, listing
// each product through the same path as ListItem (so the thumbnail worker
// makes its thumbnails) with an illustration drawn on the spot. It reports
// how many products it created. A catalog that has products is left alone;
// two processes seeding at once create each product once, because the demo
// products have stable ids.
func Seed(ctx context.Context, svc *Service) (int, error) {
	const op = "catalog.Seed"
	n, err := svc.store.CountProducts(ctx)
	if err != nil {
		return 0, errs.E(op, err)
	}
	if n > 0 {
		return 0, nil
	}
	cats := make([]Category, len(demoCategories))
	byID := make(map[string]demoCategory, len(demoCategories))
	for i, c := range demoCategories {
		cats[i] = c.Category
		byID[c.ID] = c
	}
	if err := svc.EnsureCategories(ctx, cats); err != nil {
		return 0, errs.E(op, err)
	}
	images, err := renderDemoImages(ctx, byID)
	if err != nil {
		return 0, errs.E(op, err)
	}
	created := 0
	for i, p := range demoProducts {
		_, err := svc.listItem(ctx, p.id, NewItem{
			Name:        p.name,
			Description: p.description,
			Category:    p.category,
			Price:       money.USD(p.cents),
			Stock:       p.stock,
			Image:       images[i],
		})
		switch {
		case errs.Is(errs.Conflict, err):
			// Another instance seeding at the same time got here first.
		case err != nil:
			return created, errs.E(op, err)
		default:
			created++
		}
	}
	return created, nil
}

// renderDemoImages draws every demo product's illustration, in parallel.
func renderDemoImages(ctx context.Context, cats map[string]demoCategory) ([][]byte, error) {
	out := make([][]byte, len(demoProducts))
	errList := make([]error, len(demoProducts))
	next := make(chan int)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				p := demoProducts[i]
				out[i], errList[i] = renderProduct(p.id, p.name, cats[p.category].palette, cats[p.category].motif)
			}
		}()
	}
	for i := range demoProducts {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, err := range errList {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
