package console

// messageWindow sums the cells (in product order) of the overview's
// window i (windowCells).
func messageWindow(cells []windowCell, i int) MessageWindow {
	w := MessageWindow{Products: []ProductMessageRates{}}
	by := map[string]int64{}
	for _, c := range cells {
		n := c.n[i]
		if n == nil {
			continue
		}
		by[c.status] += *n
		w.Total.add(c.status, *n)
		if len(w.Products) == 0 || w.Products[len(w.Products)-1].ProductID != c.product {
			w.Products = append(w.Products, ProductMessageRates{ProductID: c.product})
		}
		w.Products[len(w.Products)-1].add(c.status, *n)
	}
	for _, s := range messageStatuses {
		w.Statuses = append(w.Statuses, MessageCount{Status: s, Messages: by[s]})
	}
	return w
}
