//! One way to page every list the store serves: a [`PageRequest`] says where to continue and how many to
//! give, a [`Page`] answers with the items and the key of the last one when more may follow.
//!
//! Each list reads one row more than asked: when it arrives, there is another page, and the key of the last
//! row kept is where it starts. No count is run, and a list that ends exactly at a page boundary gives no
//! empty page.

/// Where a page of a list starts and how long it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest<K> {
    /// Continue after the item with this key (the list's sort key); `None` starts at the beginning.
    pub after: Option<K>,
    /// At most this many items (at least one is always asked for).
    pub limit: usize,
}

impl<K> PageRequest<K> {
    /// The first `limit` items.
    pub fn first(limit: usize) -> Self {
        Self { after: None, limit }
    }

    /// How many rows a query reads: one more than the page, to tell whether another follows.
    pub(super) fn probe(&self) -> i64 {
        i64::try_from(self.limit.max(1).saturating_add(1)).unwrap_or(i64::MAX)
    }

    /// Cuts rows read with [`probe`](Self::probe) to the page, keyed by `key` to continue from.
    pub(super) fn page<T>(&self, mut items: Vec<T>, key: impl Fn(&T) -> K) -> Page<T, K> {
        let limit = self.limit.max(1);
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(key)
        } else {
            None
        };
        Page { items, next }
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T, K> {
    /// The items, in the list's order.
    pub items: Vec<T>,
    /// The key to continue after, if more items may follow.
    pub next: Option<K>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_read_with_its_probe_row_says_whether_more_follow() {
        let request = PageRequest { after: None::<u32>, limit: 3 };
        assert_eq!(request.probe(), 4);
        let more = request.page(vec![1, 2, 3, 4], |item| *item);
        assert_eq!((more.items, more.next), (vec![1, 2, 3], Some(3)));
        let last = request.page(vec![1, 2, 3], |item| *item);
        assert_eq!((last.items, last.next), (vec![1, 2, 3], None), "a list ending at the boundary has no next");
        let zero = PageRequest { after: None::<u32>, limit: 0 };
        assert_eq!(zero.page(vec![7, 8], |item| *item).items, [7], "at least one item is asked for");
    }
}
