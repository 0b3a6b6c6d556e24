//! The catalog HTTP API against a fresh, migrated PostgreSQL database per test.

use std::time::Duration;

use axum::Router;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use sneakerstop_auth::SessionKeys;
use sneakerstop_catalog::{AppState, SCHEMA};
use sneakerstop_settings::Secret;
use sneakerstop_test_support::{Answer, Call, TestDb};
use uuid::Uuid;

struct Ctx {
    app: Router,
    pool: sqlx::PgPool,
    keys: SessionKeys,
    _db: TestDb,
}

async fn ctx() -> Ctx {
    let db = TestDb::new().await;
    let pool =
        sneakerstop_db::connect_and_migrate(&db.config(), SCHEMA, &sneakerstop_catalog::migrations()).await.unwrap();
    let keys = SessionKeys::new(&Secret::new("catalog-http-test-secret-0123456789"), Duration::from_secs(3600), false);
    let app = sneakerstop_catalog::app(AppState::uncached(pool.clone(), keys.clone()));
    Ctx { app, pool, keys, _db: db }
}

impl Ctx {
    fn user(&self) -> (Uuid, String) {
        sneakerstop_test_support::signed_in(&self.keys)
    }

    async fn create(&self, auth: &str, body: Value) -> Answer {
        Call::post("/api/sneakers", body).header("authorization", auth).send(&self.app).await
    }

    async fn list(&self, query: &str) -> Answer {
        Call::get(&format!("/api/sneakers{query}")).send(&self.app).await
    }

    async fn outbox(&self) -> Vec<(String, String, Value)> {
        sqlx::query_as("SELECT event_type, message_key, payload::jsonb FROM outbox ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }
}

fn listing(title: &str, price: f64, size: f64) -> Value {
    json!({"title": title, "price": price, "size": size, "brand": "Nike", "description": "deadstock"})
}

#[tokio::test]
async fn listing_a_pair_stores_it_and_writes_sneaker_listed() {
    let ctx = ctx().await;
    let (seller, auth) = ctx.user();
    let answer = ctx.create(&auth, listing("  Air Max 90 ", 129.99, 9.5)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    let body = &answer.json;
    assert_eq!(body["title"], "Air Max 90");
    assert_eq!(body["price"], 129.99);
    assert_eq!(body["size"], 9.5);
    assert_eq!(body["brand"], "Nike");
    assert_eq!(body["sellerId"], seller.to_string());
    assert_eq!(body["status"], "available");
    assert_eq!(body["version"], 1);
    assert!(body["createdAt"].is_string() && body["updatedAt"].is_string());
    assert_eq!(answer.headers["etag"], "\"1\"");

    let events = ctx.outbox().await;
    assert_eq!(events.len(), 1);
    let (event_type, key, payload) = &events[0];
    assert_eq!(event_type, "sneaker.listed");
    assert_eq!(key, body["id"].as_str().unwrap());
    assert_eq!(payload["priceCents"], 12_999);
    assert_eq!(payload["version"], 1);
    assert_eq!(payload["status"], "available");
    assert_eq!(payload["createdAt"], body["createdAt"], "the event carries the stored time");

    let fetched = Call::get(&format!("/api/sneakers/{}", body["id"].as_str().unwrap())).send(&ctx.app).await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(&fetched.json, body);
}

#[tokio::test]
async fn listing_requires_a_session() {
    let ctx = ctx().await;
    let answer = Call::post("/api/sneakers", listing("Dunk Low", 100.0, 10.0)).send(&ctx.app).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.content_type(), Some("application/problem+json"));
    let answer = ctx.create("Bearer not-a-token", listing("Dunk Low", 100.0, 10.0)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(ctx.outbox().await.is_empty());
}

#[tokio::test]
async fn invalid_listings_name_each_field_and_write_nothing() {
    let ctx = ctx().await;
    let (_, auth) = ctx.user();
    let answer = ctx.create(&auth, json!({"title": "", "price": 0, "size": 23})).await;
    assert_eq!(answer.assert_invalid_field("title"), "is required");
    assert!(answer.assert_invalid_field("price").contains("greater than 0"));
    assert!(answer.assert_invalid_field("size").contains("half steps"));
    assert!(ctx.create(&auth, listing("x", 10.001, 9.0)).await.assert_invalid_field("price").contains("2 decimal"));
    assert!(ctx.create(&auth, listing("x", 100_000.5, 9.0)).await.assert_invalid_field("price").contains("at most"));
    assert!(
        ctx.create(&auth, listing(&"t".repeat(121), 10.0, 9.0)).await.assert_invalid_field("title").contains("120")
    );
    assert_eq!(ctx.create(&auth, json!({"title": "x", "size": 9})).await.assert_invalid_field("price"), "is required");
    assert!(
        ctx.create(&auth, json!({"title": "x", "price": "ten", "size": 9}))
            .await
            .assert_invalid_field("price")
            .contains("invalid type")
    );
    assert!(ctx.outbox().await.is_empty());
}

#[tokio::test]
async fn values_postgresql_cannot_store_are_refused_by_field_not_answered_500() {
    let ctx = ctx().await;
    let (_, auth) = ctx.user();
    // More than 0, yet 0 cents once rounded; and U+0000 in any text field.
    for tiny in [1e-9, 5e-324] {
        let answer = ctx.create(&auth, listing("x", tiny, 9.0)).await;
        assert_eq!(answer.assert_invalid_field("price"), "must be at least 0.01", "{tiny}");
    }
    for field in ["title", "brand", "description"] {
        let mut body = listing("Dunk", 10.0, 9.0);
        body[field] = json!("bad\u{0}byte");
        assert!(ctx.create(&auth, body).await.assert_invalid_field(field).contains("NUL"), "{field}");
    }
    let created = ctx.create(&auth, listing("Dunk", 10.0, 9.0)).await;
    let uri = format!("/api/sneakers/{}", created.json["id"].as_str().unwrap());
    let put = Call::new(Method::PUT, &uri).json(listing("Dunk", 1e-9, 9.0)).header("authorization", &auth);
    assert_eq!(put.send(&ctx.app).await.assert_invalid_field("price"), "must be at least 0.01");
    assert_eq!(ctx.outbox().await.len(), 1, "only the valid listing wrote an event");
}

#[tokio::test]
async fn a_listing_retried_with_its_idempotency_key_is_listed_once() {
    let ctx = ctx().await;
    let (_, auth) = ctx.user();
    let send = |body: Value, key: &str| {
        Call::post("/api/sneakers", body).header("authorization", &auth).header("idempotency-key", key).send(&ctx.app)
    };
    let first = send(listing("Air Max 1", 150.0, 10.0), "list-1").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let retry = send(listing("Air Max 1", 150.0, 10.0), "list-1").await;
    assert_eq!((retry.status, &retry.json), (StatusCode::CREATED, &first.json), "the first listing, again");
    let reused = send(listing("Air Max 95", 150.0, 10.0), "list-1").await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reused.text);
    // Each seller's keys are their own.
    let (_, other) = ctx.user();
    let theirs = Call::post("/api/sneakers", listing("Air Max 1", 150.0, 10.0))
        .header("authorization", &other)
        .header("idempotency-key", "list-1")
        .send(&ctx.app)
        .await;
    assert_eq!(theirs.status, StatusCode::CREATED);
    assert_ne!(theirs.json["id"], first.json["id"]);
    let listed: Vec<_> = ctx.outbox().await.into_iter().filter(|(t, _, _)| t == "sneaker.listed").collect();
    assert_eq!(listed.len(), 2, "one listing per seller, whatever the retries");
}

#[tokio::test]
async fn a_missing_or_malformed_id_is_a_clear_error() {
    let ctx = ctx().await;
    let missing = Call::get(&format!("/api/sneakers/{}", Uuid::now_v7())).send(&ctx.app).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.content_type(), Some("application/problem+json"));
    let malformed = Call::get("/api/sneakers/not-a-uuid").send(&ctx.app).await;
    assert_eq!(malformed.assert_invalid_field("id"), "must be a UUID");
}

#[tokio::test]
async fn the_seller_edits_with_optimistic_concurrency() {
    let ctx = ctx().await;
    let (_, seller) = ctx.user();
    let (_, stranger) = ctx.user();
    let created = ctx.create(&seller, listing("Yeezy 350", 300.0, 11.0)).await;
    let uri = format!("/api/sneakers/{}", created.json["id"].as_str().unwrap());
    let put = |auth: &str, body: Value| Call::new(Method::PUT, &uri).json(body).header("authorization", auth);

    let answer = put(&seller, json!({"title": "Yeezy Boost 350 V2", "price": 280.5, "size": 11.5}))
        .header("if-match", "\"1\"")
        .send(&ctx.app)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["title"], "Yeezy Boost 350 V2");
    assert_eq!(answer.json["price"], 280.5);
    assert_eq!(answer.json["brand"], Value::Null, "PUT replaces: an omitted brand is cleared");
    assert_eq!(answer.json["version"], 2);
    assert_eq!(answer.headers["etag"], "\"2\"");

    let stale = put(&seller, listing("Again", 1.0, 9.0)).header("if-match", "1").send(&ctx.app).await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED, "{}", stale.text);
    assert!(stale.json["detail"].as_str().unwrap().contains("current version 2"));
    let garbled = put(&seller, listing("Again", 1.0, 9.0)).header("if-match", "yesterday").send(&ctx.app).await;
    garbled.assert_invalid_field("If-Match");

    let forbidden = put(&stranger, listing("Mine now", 1.0, 9.0)).send(&ctx.app).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    let anonymous = Call::new(Method::PUT, &uri).json(listing("x", 1.0, 9.0)).send(&ctx.app).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let unknown = Call::new(Method::PUT, &format!("/api/sneakers/{}", Uuid::now_v7()))
        .json(listing("x", 1.0, 9.0))
        .header("authorization", &seller)
        .send(&ctx.app)
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let events = ctx.outbox().await;
    let kinds: Vec<_> = events.iter().map(|(t, _, p)| (t.as_str(), p["version"].as_i64().unwrap())).collect();
    assert_eq!(kinds, [("sneaker.listed", 1), ("sneaker.updated", 2)], "refused edits wrote no event");

    // A reserved pair is locked (orders will reserve it; here we set the state directly).
    sqlx::query("UPDATE sneakers SET status = 'reserved'").execute(&ctx.pool).await.unwrap();
    let locked = put(&seller, listing("x", 1.0, 9.0)).send(&ctx.app).await;
    assert_eq!(locked.status, StatusCode::CONFLICT);
    assert!(locked.json["detail"].as_str().unwrap().contains("reserved"));
}

#[tokio::test]
async fn browsing_filters_sorts_and_pages_with_a_cursor() {
    let ctx = ctx().await;
    let (seller_a, a) = ctx.user();
    let (_, b) = ctx.user();
    for (auth, title, brand, price, size) in [
        (&a, "Air Jordan 1 High", "Nike", 250.0, 10.0),
        (&a, "Air Max 90", "Nike", 130.0, 9.5),
        (&b, "Gel-Lyte III", "Asics", 120.0, 10.0),
        (&b, "Samba OG", "Adidas", 100.0, 10.0),
        (&b, "Forum Low", "Adidas", 90.0, 11.0),
    ] {
        let answer = ctx.create(auth, json!({"title": title, "brand": brand, "price": price, "size": size})).await;
        assert_eq!(answer.status, StatusCode::CREATED);
    }
    let titles = |answer: &Answer| -> Vec<String> {
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        answer.json["items"].as_array().unwrap().iter().map(|i| i["title"].as_str().unwrap().to_owned()).collect()
    };

    assert_eq!(
        titles(&ctx.list("").await),
        ["Forum Low", "Samba OG", "Gel-Lyte III", "Air Max 90", "Air Jordan 1 High"]
    );
    assert_eq!(titles(&ctx.list("?q=air%20jor").await), ["Air Jordan 1 High"]);
    assert_eq!(titles(&ctx.list("?q=adidas&sort=price_asc").await), ["Forum Low", "Samba OG"]);
    assert_eq!(titles(&ctx.list("?size=10&sort=price_desc").await), ["Air Jordan 1 High", "Gel-Lyte III", "Samba OG"]);
    assert_eq!(
        titles(&ctx.list("?minPrice=100&maxPrice=130&sort=price_asc").await),
        ["Samba OG", "Gel-Lyte III", "Air Max 90"]
    );
    assert_eq!(titles(&ctx.list(&format!("?sellerId={seller_a}")).await), ["Air Max 90", "Air Jordan 1 High"]);
    assert!(titles(&ctx.list("?status=sold").await).is_empty());

    // Walk every page of two by price, following nextCursor.
    let mut seen = Vec::new();
    let mut query = "?sort=price_asc&limit=2".to_owned();
    loop {
        let page = ctx.list(&query).await;
        seen.extend(titles(&page));
        match page.json["nextCursor"].as_str() {
            Some(cursor) => query = format!("?sort=price_asc&limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ["Forum Low", "Samba OG", "Gel-Lyte III", "Air Max 90", "Air Jordan 1 High"]);

    // A cursor carries its pages' sort: the next page follows on from the first (newest
    // first) whatever `sort` says now.
    let first = ctx.list("?limit=2").await;
    let cursor = first.json["nextCursor"].as_str().unwrap();
    let next = ctx.list(&format!("?sort=price_desc&limit=2&cursor={cursor}")).await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.text);
    let newest_first: Vec<String> = [titles(&first), titles(&next)].concat();
    let mut all_newest = titles(&ctx.list("?limit=4").await);
    all_newest.truncate(4);
    assert_eq!(newest_first, all_newest);
    ctx.list("?cursor=garbage").await.assert_invalid_field("cursor");
    ctx.list("?limit=0").await.assert_invalid_field("limit");
    ctx.list("?limit=101").await.assert_invalid_field("limit");
    ctx.list("?status=lost").await.assert_invalid_field("status");
    ctx.list("?minPrice=abc").await.assert_invalid_field("minPrice");
    ctx.list("?sort=cheapest").await.assert_invalid_field("sort");
}

fn product(style_code: &str, name: &str) -> Value {
    json!({"styleCode": style_code, "name": name, "brand": "Jordan", "colorway": "Varsity Red/Black",
           "retailPrice": 180, "releaseDate": "2023-11-18", "sizes": [9, 9.5, 10, 10.5]})
}

#[tokio::test]
async fn only_admins_create_products_and_a_style_code_is_unique() {
    let ctx = ctx().await;
    let (_, member) = ctx.user();
    let (admin_id, admin) = sneakerstop_test_support::signed_in_admin(&ctx.keys);
    let body = product("dz5485-612", "Air Jordan 1 Retro High OG");

    let refused = Call::post("/api/products", body.clone()).header("authorization", &member).send(&ctx.app).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert!(refused.json["detail"].as_str().unwrap().contains("only an admin may create products"));
    let anonymous = Call::post("/api/products", body.clone()).send(&ctx.app).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(ctx.outbox().await.is_empty(), "nothing written for a refusal");

    let created = Call::post("/api/products", body.clone()).header("authorization", &admin).send(&ctx.app).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.json["styleCode"], "DZ5485-612");
    assert_eq!(created.json["sizes"], json!([9.0, 9.5, 10.0, 10.5]));
    assert_eq!(created.json["retailPrice"], 180.0);
    assert_eq!(created.json["releaseDate"], "2023-11-18");
    let id = created.json["id"].as_str().unwrap().to_owned();
    let events = ctx.outbox().await;
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].0.as_str(), events[0].1.as_str()), ("product.created", id.as_str()));
    assert_eq!(events[0].2["sizes"], json!([9.0, 9.5, 10.0, 10.5]));
    let created_by: Uuid = sqlx::query_scalar("SELECT created_by FROM products").fetch_one(&ctx.pool).await.unwrap();
    assert_eq!(created_by, admin_id);

    let again = Call::post("/api/products", product("DZ5485-612", "Another")).header("authorization", &admin);
    let again = again.send(&ctx.app).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    assert!(again.json["detail"].as_str().unwrap().contains("DZ5485-612"));

    let bad = json!({"styleCode": "-", "name": "", "brand": "Jordan", "sizes": [9, 9]});
    let bad = Call::post("/api/products", bad).header("authorization", &admin).send(&ctx.app).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let fields: Vec<&str> =
        bad.json["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["styleCode", "name", "sizes"]);

    let one = Call::get(&format!("/api/products/{id}")).send(&ctx.app).await;
    assert_eq!((one.status, one.json["name"].as_str()), (StatusCode::OK, Some("Air Jordan 1 Retro High OG")));
    let missing = Call::get(&format!("/api/products/{}", Uuid::now_v7())).send(&ctx.app).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_admin_corrects_a_product_adding_sizes_never_dropping_one() {
    let ctx = ctx().await;
    let (_, member) = ctx.user();
    let (_, admin) = sneakerstop_test_support::signed_in_admin(&ctx.keys);
    let created = Call::post("/api/products", product("DZ5485-612", "Air Jordon 1")).header("authorization", &admin);
    let created = created.send(&ctx.app).await;
    assert_eq!((created.status, &created.json["version"]), (StatusCode::CREATED, &json!(1)), "{}", created.text);
    let uri = format!("/api/products/{}", created.json["id"].as_str().unwrap());
    let put = |body: Value, auth: &str| Call::new(Method::PUT, &uri).json(body).header("authorization", auth);

    // The name fixed and size 11 added: version 2, announced whole.
    let mut fixed = product("DZ5485-612", "Air Jordan 1 Retro High OG");
    fixed["sizes"] = json!([9, 9.5, 10, 10.5, 11]);
    let refused = put(fixed.clone(), &member).send(&ctx.app).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    let corrected = put(fixed.clone(), &admin).header("if-match", "\"1\"").send(&ctx.app).await;
    assert_eq!(corrected.status, StatusCode::OK, "{}", corrected.text);
    assert_eq!(
        (&corrected.json["name"], &corrected.json["sizes"], &corrected.json["version"]),
        (&json!("Air Jordan 1 Retro High OG"), &json!([9.0, 9.5, 10.0, 10.5, 11.0]), &json!(2))
    );
    assert_eq!(corrected.json["createdAt"], created.json["createdAt"]);
    let events = ctx.outbox().await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].0, "product.updated");
    assert_eq!((&events[1].2["version"], &events[1].2["sizes"]), (&json!(2), &corrected.json["sizes"]));

    // Refused, and nothing written: a stale If-Match, a dropped size, a taken style code.
    let stale = put(fixed.clone(), &admin).header("if-match", "1").send(&ctx.app).await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED, "{}", stale.text);
    let mut dropped = fixed.clone();
    dropped["sizes"] = json!([9, 10, 11]);
    let dropped = put(dropped, &admin).send(&ctx.app).await;
    assert_eq!(dropped.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", dropped.text);
    assert_eq!(dropped.json["errors"][0]["field"], "sizes");
    assert!(dropped.json["errors"][0]["reason"].as_str().unwrap().contains("9.5, 10.5 left out"), "{}", dropped.text);
    let other = Call::post("/api/products", product("FD0001-100", "Other")).header("authorization", &admin);
    assert_eq!(other.send(&ctx.app).await.status, StatusCode::CREATED);
    let mut taken = fixed.clone();
    taken["styleCode"] = json!("fd0001-100");
    let taken = put(taken, &admin).send(&ctx.app).await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.text);
    assert_eq!(ctx.outbox().await.len(), 3, "only the other product's creation was written since");
    let unknown = Call::new(Method::PUT, &format!("/api/products/{}", Uuid::now_v7()))
        .json(fixed)
        .header("authorization", &admin);
    assert_eq!(unknown.send(&ctx.app).await.status, StatusCode::NOT_FOUND);
    let now = Call::get(&uri).send(&ctx.app).await;
    assert_eq!((&now.json["version"], &now.json["name"]), (&json!(2), &json!("Air Jordan 1 Retro High OG")));
}

#[tokio::test]
async fn products_are_found_by_style_code_name_or_brand() {
    let ctx = ctx().await;
    let (_, admin) = sneakerstop_test_support::signed_in_admin(&ctx.keys);
    for (code, name) in [("DZ5485-612", "Air Jordan 1 Lost and Found"), ("FQ8232-100", "Dunk Low Panda")] {
        let answer = Call::post("/api/products", product(code, name)).header("authorization", &admin);
        assert_eq!(answer.send(&ctx.app).await.status, StatusCode::CREATED);
    }
    let names = |answer: &Answer| -> Vec<String> {
        answer.json["items"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect()
    };
    for (q, expected) in [
        ("dz5485", vec!["Air Jordan 1 Lost and Found"]),
        ("FQ8232-100", vec!["Dunk Low Panda"]),
        ("dunk+pan", vec!["Dunk Low Panda"]),
        ("jordan", vec!["Dunk Low Panda", "Air Jordan 1 Lost and Found"]),
        ("yeezy", vec![]),
        ("-", vec![]),
    ] {
        let answer = Call::get(&format!("/api/products?q={q}")).send(&ctx.app).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        assert_eq!(names(&answer), expected, "q={q}");
    }
    let first = Call::get("/api/products?limit=1").send(&ctx.app).await;
    assert_eq!(names(&first), ["Dunk Low Panda"], "newest first");
    let cursor = first.json["nextCursor"].as_str().unwrap().to_owned();
    let second = Call::get(&format!("/api/products?limit=1&cursor={cursor}")).send(&ctx.app).await;
    assert_eq!(names(&second), ["Air Jordan 1 Lost and Found"]);
    assert!(second.json["nextCursor"].is_null());
    let bad = Call::get("/api/products?limit=0").send(&ctx.app).await;
    assert_eq!((bad.status, bad.json["errors"][0]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("limit")));
}

#[tokio::test]
async fn a_listing_naming_a_product_is_an_ask_in_one_of_its_sizes() {
    let ctx = ctx().await;
    let (_, admin) = sneakerstop_test_support::signed_in_admin(&ctx.keys);
    let (_, seller) = ctx.user();
    let created = Call::post("/api/products", product("DZ5485-612", "AJ1")).header("authorization", &admin);
    let product_id = created.send(&ctx.app).await.json["id"].as_str().unwrap().to_owned();

    let ask = json!({"title": "AJ1 Lost and Found", "price": 250, "size": 10.5, "productId": product_id});
    let listed = ctx.create(&seller, ask.clone()).await;
    assert_eq!(listed.status, StatusCode::CREATED, "{}", listed.text);
    assert_eq!(listed.json["productId"], product_id.as_str());
    let events = ctx.outbox().await;
    let last = events.last().unwrap();
    assert_eq!((last.0.as_str(), &last.2["productId"]), ("sneaker.listed", &json!(product_id)));

    let wrong_size =
        ctx.create(&seller, json!({"title": "AJ1", "price": 250, "size": 13, "productId": product_id})).await;
    assert_eq!(wrong_size.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", wrong_size.text);
    assert_eq!(wrong_size.json["errors"][0]["field"], "size");
    assert!(wrong_size.json["errors"][0]["reason"].as_str().unwrap().contains("9, 9.5, 10, 10.5"));
    let unknown = json!({"title": "AJ1", "price": 250, "size": 10, "productId": Uuid::now_v7()});
    let unknown = ctx.create(&seller, unknown).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text);
    assert!(unknown.json["detail"].as_str().unwrap().contains("no product has this id"));

    // A free listing is as before: no productId in the answer or the event.
    let free = ctx.create(&seller, listing("Air Max 90", 129.99, 9.5)).await;
    assert_eq!(free.status, StatusCode::CREATED);
    assert!(free.json.get("productId").is_none(), "{}", free.text);
    assert!(ctx.outbox().await.last().unwrap().2.get("productId").is_none());

    // An edit keeps the ask on its product and in its sizes.
    let id = listed.json["id"].as_str().unwrap();
    let uri = format!("/api/sneakers/{id}");
    let edit = |body: Value| Call::new(Method::PUT, &uri).json(body).header("authorization", &seller);
    let cheaper = edit(json!({"title": "AJ1", "price": 240, "size": 10.5})).send(&ctx.app).await;
    assert_eq!((cheaper.status, cheaper.json["productId"].as_str()), (StatusCode::OK, Some(product_id.as_str())));
    let resized = edit(json!({"title": "AJ1", "price": 240, "size": 12})).send(&ctx.app).await;
    assert_eq!(
        (resized.status, resized.json["errors"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("size"))
    );
    let retimed = edit(json!({"title": "AJ1", "price": 240, "size": 10.5, "expiresInDays": 60})).send(&ctx.app).await;
    assert_eq!(
        (retimed.status, retimed.json["errors"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("expiresInDays"))
    );
    let moved =
        edit(json!({"title": "AJ1", "price": 240, "size": 10, "productId": Uuid::now_v7()})).send(&ctx.app).await;
    assert_eq!((moved.status, moved.json["errors"][0]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("productId")));
}

#[tokio::test]
async fn an_ask_expires_when_its_time_runs_out_and_the_sweep_says_so() {
    let ctx = ctx().await;
    let (_, admin) = sneakerstop_test_support::signed_in_admin(&ctx.keys);
    let (_, seller) = ctx.user();
    let created = Call::post("/api/products", product("DZ5485-612", "AJ1")).header("authorization", &admin);
    let product_id = created.send(&ctx.app).await.json["id"].as_str().unwrap().to_owned();

    let ask = json!({"title": "AJ1", "price": 250, "size": 10, "productId": product_id, "expiresInDays": 7});
    let listed = ctx.create(&seller, ask).await;
    assert_eq!(listed.status, StatusCode::CREATED, "{}", listed.text);
    let expires: chrono::DateTime<chrono::Utc> = listed.json["expiresAt"].as_str().unwrap().parse().unwrap();
    let days = (expires - chrono::Utc::now()).num_hours();
    assert!((167..=168).contains(&days), "7 days: {days} h");
    let free = ctx.create(&seller, json!({"title": "Dunk", "price": 90, "size": 9, "expiresInDays": 7})).await;
    assert_eq!(
        (free.status, free.json["errors"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("expiresInDays"))
    );
    let long = json!({"title": "AJ1", "price": 250, "size": 10, "productId": product_id, "expiresInDays": 91});
    assert_eq!(ctx.create(&seller, long).await.status, StatusCode::BAD_REQUEST);
    // JSON Schema's integer, as the API document says: 21.0 is 21; 21.5 is no whole number.
    let spelled = json!({"title": "AJ1", "price": 250, "size": 10, "productId": product_id, "expiresInDays": 21.0});
    assert_eq!(ctx.create(&seller, spelled).await.status, StatusCode::CREATED);
    let fraction = json!({"title": "AJ1", "price": 250, "size": 10, "productId": product_id, "expiresInDays": 21.5});
    assert_eq!(ctx.create(&seller, fraction).await.assert_invalid_field("expiresInDays"), "must be a whole number");

    assert_eq!(sneakerstop_catalog::expiry::sweep(&ctx.pool).await.unwrap(), 0, "not yet");
    let id: Uuid = listed.json["id"].as_str().unwrap().parse().unwrap();
    sqlx::query("UPDATE sneakers SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(id)
        .execute(&ctx.pool)
        .await
        .unwrap();
    assert_eq!(sneakerstop_catalog::expiry::sweep(&ctx.pool).await.unwrap(), 1);
    let swept = Call::get(&format!("/api/sneakers/{id}")).send(&ctx.app).await;
    assert_eq!((swept.json["status"].as_str(), swept.json["version"].as_i64()), (Some("expired"), Some(2)));
    let last = ctx.outbox().await.pop().unwrap();
    assert_eq!((last.0.as_str(), last.2["status"].as_str()), ("sneaker.updated", Some("expired")));
    let expired = ctx.list("?status=expired").await;
    assert_eq!(expired.json["items"].as_array().unwrap().len(), 1, "{}", expired.text);
}

#[tokio::test]
async fn the_seller_withdraws_an_available_pair_for_good_and_it_is_announced() {
    let ctx = ctx().await;
    let (_, seller) = ctx.user();
    let (_, stranger) = ctx.user();
    let created = ctx.create(&seller, listing("Dunk Low Panda", 110.0, 10.0)).await;
    let id = created.json["id"].as_str().unwrap().to_owned();
    let withdraw =
        |auth: &str| Call::new(Method::POST, &format!("/api/sneakers/{id}/withdraw")).header("authorization", auth);

    assert_eq!(withdraw(&stranger).send(&ctx.app).await.status, StatusCode::FORBIDDEN);
    let stale = withdraw(&seller).header("if-match", "\"7\"").send(&ctx.app).await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED, "{}", stale.text);
    let anonymous = Call::new(Method::POST, &format!("/api/sneakers/{id}/withdraw")).send(&ctx.app).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    let withdrawn = withdraw(&seller).header("if-match", "\"1\"").send(&ctx.app).await;
    assert_eq!(withdrawn.status, StatusCode::OK, "{}", withdrawn.text);
    assert_eq!((withdrawn.json["status"].as_str(), withdrawn.json["version"].as_i64()), (Some("withdrawn"), Some(2)));
    assert_eq!(withdrawn.headers["etag"], "\"2\"");

    // For good: not again, not edited, not on the default (available) listing.
    let again = withdraw(&seller).send(&ctx.app).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    assert!(again.json["detail"].as_str().unwrap().contains("withdrawn"), "{}", again.text);
    let edit = Call::new(Method::PUT, &format!("/api/sneakers/{id}"))
        .json(listing("Back", 1.0, 10.0))
        .header("authorization", &seller)
        .send(&ctx.app)
        .await;
    assert_eq!(edit.status, StatusCode::CONFLICT);
    assert_eq!(ctx.list("").await.json["items"].as_array().unwrap().len(), 0);
    let listed = ctx.list("?status=withdrawn").await;
    assert_eq!(listed.json["items"][0]["id"].as_str(), Some(id.as_str()), "{}", listed.text);

    let events = ctx.outbox().await;
    let (event_type, key, payload) = events.last().unwrap();
    assert_eq!((event_type.as_str(), key.as_str()), ("sneaker.updated", id.as_str()));
    assert_eq!((payload["status"].as_str(), payload["version"].as_i64()), (Some("withdrawn"), Some(2)));
    let missing = Call::new(Method::POST, &format!("/api/sneakers/{}/withdraw", Uuid::now_v7()))
        .header("authorization", &seller)
        .send(&ctx.app)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}
