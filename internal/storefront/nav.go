package storefront

// currentCategory is the category a page belongs to, marked in the
// header's category strip: the category page itself (aria-current="page"),
// or the category of the product a product page shows (aria-current="true":
// the visitor is inside that category, not on its page).
type currentCategory struct {
	ID   string
	Page bool // the page is the category's own page
}

// inCategory is implemented by the data of pages that belong to a category.
type inCategory interface {
	currentCategory() currentCategory
}

func (d categoryData) currentCategory() currentCategory {
	return currentCategory{ID: d.Category.ID, Page: true}
}

func (d productData) currentCategory() currentCategory {
	return currentCategory{ID: d.Product.Category}
}
