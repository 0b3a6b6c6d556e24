//! The API's answers as the storefront reads them (only the fields it shows), and how
//! money, sizes and times are written on a page.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use uuid::Uuid;

/// `$1,250.00`.
pub fn money(amount: f64) -> String {
    let cents = (amount * 100.0).round() as i64;
    let (whole, cents) = (cents / 100, cents % 100);
    let digits = whole.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("${grouped}.{cents:02}")
}

/// An amount as a form field holds it: `250.00`.
pub fn amount(amount: f64) -> String {
    format!("{amount:.2}")
}

/// A US size: `10`, `10.5`.
pub fn size(size: f64) -> String {
    if size.fract() == 0.0 { format!("{size:.0}") } else { format!("{size}") }
}

/// A moment, to the minute, in UTC.
pub fn when(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A page of a list endpoint.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A product (catalog).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub id: Uuid,
    pub style_code: String,
    pub name: String,
    pub brand: String,
    pub colorway: Option<String>,
    pub retail_price: Option<f64>,
    pub release_date: Option<NaiveDate>,
    pub sizes: Vec<f64>,
    pub version: i64,
}

impl Product {
    pub fn retail(&self) -> String {
        self.retail_price.map_or_else(|| "—".to_owned(), money)
    }
    pub fn released(&self) -> String {
        self.release_date.map_or_else(|| "—".to_owned(), |d| d.format("%Y-%m-%d").to_string())
    }
    pub fn colors(&self) -> &str {
        self.colorway.as_deref().unwrap_or("—")
    }
    pub fn size_list(&self) -> String {
        self.sizes.iter().map(|s| size(*s)).collect::<Vec<_>>().join(", ")
    }
}

/// A listing (catalog); an ask when it names a product.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listing {
    pub id: Uuid,
    pub title: String,
    pub price: f64,
    pub size: f64,
    pub brand: Option<String>,
    pub description: Option<String>,
    pub product_id: Option<Uuid>,
    pub expires_at: Option<DateTime<Utc>>,
    pub seller_id: Uuid,
    pub status: String,
    pub version: i64,
}

impl Listing {
    pub fn price_text(&self) -> String {
        money(self.price)
    }
    pub fn size_text(&self) -> String {
        size(self.size)
    }
    pub fn brand_text(&self) -> &str {
        self.brand.as_deref().unwrap_or("")
    }
    pub fn description_text(&self) -> &str {
        self.description.as_deref().unwrap_or("")
    }
    pub fn expires(&self) -> String {
        self.expires_at.as_ref().map_or_else(String::new, when)
    }
    pub fn is_available(&self) -> bool {
        self.status == "available"
    }
}

/// A sale (market).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sale {
    pub size: f64,
    pub price: f64,
    pub sold_at: DateTime<Utc>,
}

impl Sale {
    pub fn price_text(&self) -> String {
        money(self.price)
    }
    pub fn size_text(&self) -> String {
        size(self.size)
    }
    pub fn when(&self) -> String {
        when(&self.sold_at)
    }
}

/// One size of a product's market.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SizeMarket {
    pub size: f64,
    pub lowest_ask: Option<f64>,
    pub lowest_ask_id: Option<Uuid>,
    pub highest_bid: Option<f64>,
    pub asks: i64,
    pub bids: i64,
    pub last_sale: Option<Sale>,
}

impl SizeMarket {
    pub fn size_text(&self) -> String {
        size(self.size)
    }
    pub fn ask_text(&self) -> String {
        self.lowest_ask.map_or_else(|| "—".to_owned(), money)
    }
    pub fn bid_text(&self) -> String {
        self.highest_bid.map_or_else(|| "—".to_owned(), money)
    }
    pub fn bid_amount(&self) -> String {
        self.highest_bid.map(amount).unwrap_or_default()
    }
    pub fn last_text(&self) -> String {
        self.last_sale.as_ref().map_or_else(|| "—".to_owned(), Sale::price_text)
    }
    pub fn ask_id(&self) -> String {
        self.lowest_ask_id.map(|id| id.to_string()).unwrap_or_default()
    }
}

/// A product's market, size by size.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Market {
    pub sizes: Vec<SizeMarket>,
}

/// A product's market over all sizes (`GET /api/markets`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductMarket {
    pub product_id: Uuid,
    pub lowest_ask: Option<f64>,
    pub last_sale: Option<Sale>,
}

/// `GET /api/markets`.
#[derive(Debug, Deserialize)]
pub struct Markets {
    pub items: Vec<ProductMarket>,
}

/// An order (orders).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub id: Uuid,
    pub sneaker_id: Uuid,
    pub price: f64,
    pub status: String,
    pub cancel_reason: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

impl Order {
    pub fn price_text(&self) -> String {
        money(self.price)
    }
    pub fn awaiting_payment(&self) -> bool {
        self.status == "created" && self.expires_at > Utc::now()
    }
    pub fn status_text(&self) -> String {
        match self.status.as_str() {
            "created" if self.expires_at <= Utc::now() => "lapsing (not paid in time)".to_owned(),
            "created" => "reserved — awaiting payment".to_owned(),
            "complete" => "complete — paid, the pair is yours".to_owned(),
            "cancelled" => match self.cancel_reason.as_deref() {
                Some(reason) => format!("cancelled ({})", reason.replace('-', " ")),
                None => "cancelled".to_owned(),
            },
            other => other.to_owned(),
        }
    }
    pub fn deadline(&self) -> String {
        when(&self.expires_at)
    }
    pub fn placed(&self) -> String {
        when(&self.created_at)
    }
}

/// A bid (market).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bid {
    pub id: Uuid,
    pub product_id: Uuid,
    pub size: f64,
    pub price: f64,
    pub status: String,
    pub match_id: Option<Uuid>,
    pub expires_at: DateTime<Utc>,
}

impl Bid {
    pub fn price_text(&self) -> String {
        money(self.price)
    }
    pub fn size_text(&self) -> String {
        size(self.size)
    }
    pub fn expires(&self) -> String {
        when(&self.expires_at)
    }
    pub fn is_open(&self) -> bool {
        self.status == "open"
    }
    pub fn order_id(&self) -> String {
        self.match_id.map(|id| id.to_string()).unwrap_or_default()
    }
    pub fn status_text(&self) -> &'static str {
        match self.status.as_str() {
            "open" => "open — on the book",
            "matched" => "matched — your saved card is being charged",
            "filled" => "filled — bought",
            "cancelled" => "cancelled",
            "expired" => "expired — its time ran out",
            "declined" => "declined — your saved card was refused when it matched; save another card",
            _ => "unknown",
        }
    }
}

/// A payment (payments).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    pub status: String,
    pub failure_reason: Option<String>,
}

/// A saved payment method (payments).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentMethod {
    pub payment_method: String,
    pub created_at: DateTime<Utc>,
}

impl PaymentMethod {
    pub fn saved(&self) -> String {
        when(&self.created_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_sizes_and_amounts_read_as_people_write_them() {
        assert_eq!(money(250.0), "$250.00");
        assert_eq!(money(1250.5), "$1,250.50");
        assert_eq!(money(100_000.0), "$100,000.00");
        assert_eq!(money(0.07), "$0.07");
        assert_eq!(amount(25.5), "25.50");
        assert_eq!((size(10.0), size(10.5)), ("10".to_owned(), "10.5".to_owned()));
    }
}
