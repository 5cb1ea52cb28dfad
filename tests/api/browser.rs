//! The console in a real browser: Debian's headless Chromium, driven over WebDriver (`chromedriver`, with
//! fantoccini), against the server on loopback. `scripts/test` installs `chromium` and `chromium-driver`.
//! Every step that shows something saves a screenshot under `target/browser-screenshots/`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::{FakeProvider, PASSWORD, TestApp, spawn_app, whatsapp_signature};

/// A headless Chromium with its WebDriver; both end when this is dropped.
struct Browser {
    client: Client,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
    test: &'static str,
}

impl Browser {
    async fn start(test: &'static str) -> Self {
        let mut driver = tokio::process::Command::new("chromedriver")
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver runs (scripts/test installs Debian's chromium and chromium-driver)");
        // chromedriver says which port it took once it listens.
        let mut lines = BufReader::new(driver.stdout.take().expect("stdout")).lines();
        let port = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.expect("chromedriver's output") {
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    return rest.trim_end_matches('.').parse::<u16>().expect("a port");
                }
            }
            panic!("chromedriver ended before it listened");
        })
        .await
        .expect("chromedriver started");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a browser session");
        Self { client, _driver: driver, _profile: profile, test }
    }

    /// Saves what the browser shows as `target/browser-screenshots/<test>-<step>.png`.
    async fn screenshot(&self, step: &str) {
        let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/browser-screenshots");
        std::fs::create_dir_all(&folder).expect("screenshot folder");
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::write(folder.join(format!("{}-{step}.png", self.test)), png).expect("screenshot written");
    }

    /// Waits (at most 10 s) for the element `css` to be on the page.
    async fn element(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("{css} appears: {error}"))
    }

    /// Signs in through the page.
    async fn sign_in(&self, app: &TestApp, email: &str) {
        self.sign_in_with(app, email, PASSWORD).await;
    }

    /// Signs in through the page with `password`.
    async fn sign_in_with(&self, app: &TestApp, email: &str, password: &str) {
        self.client.goto(&format!("{}/", app.base)).await.expect("the console loads");
        self.element("#email").await.send_keys(email).await.expect("typed");
        self.element("#password").await.send_keys(password).await.expect("typed");
        self.screenshot("sign-in").await;
        self.element("button[type=submit]").await.click().await.expect("clicked");
        self.element("header.top").await;
    }

    /// Replaces the text of the field `css` as a person would: select all, then type.
    async fn retype(&self, css: &str, text: &str) {
        let field = self.element(css).await;
        let select_all = format!("{}a{}", char::from(Key::Control), char::from(Key::Null));
        field.send_keys(&select_all).await.expect("selected");
        field.send_keys(text).await.expect("typed");
    }

    /// Waits (at most 10 s) for the text of `css` to satisfy `check`; returns it.
    async fn text_of(&self, css: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.element(css).await.text().await.unwrap_or_default();
            if check(&text) {
                return text;
            }
            assert!(tokio::time::Instant::now() < deadline, "{css} shows {what}; it shows {text:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Presses and releases `key` wherever the focus is.
    async fn press(&self, key: impl Into<char>) {
        let key = key.into();
        let actions =
            KeyActions::new("keyboard".into()).then(KeyAction::Down { value: key }).then(KeyAction::Up { value: key });
        self.client.perform_actions(actions).await.expect("key pressed");
    }

    async fn close(self) {
        self.client.close().await.expect("the browser closes");
    }
}

const APP_SECRET: &str = "meta-app-secret-0123456789";

/// Creates client `slug` with a WhatsApp channel whose Graph API is `provider`.
async fn whatsapp_client(app: &TestApp, slug: &str, provider: &FakeProvider) {
    app.create_client(slug).await;
    app.put_channel(
        slug,
        "whatsapp",
        json!({ "app_secret": APP_SECRET, "verify_token": "verify-me-0123456789", "phone_number_id": "1099",
                "access_token": "EAAG-token", "api_base_url": format!("{}/v21.0", provider.url) }),
    )
    .await;
}

/// A WhatsApp Cloud API text message notification, as Meta posts it, signed.
async fn post_whatsapp(app: &TestApp, slug: &str, id: &str, name: &str, text: &str) {
    post_whatsapp_from(app, slug, id, "34600111222", name, text).await;
}

/// The same, from the customer whose WhatsApp id is `wa_id`.
async fn post_whatsapp_from(app: &TestApp, slug: &str, id: &str, wa_id: &str, name: &str, text: &str) {
    let body = json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "WABA", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "34930000000", "phone_number_id": "1099" },
            "contacts": [{ "wa_id": wa_id, "profile": { "name": name } }],
            "messages": [{ "id": id, "from": wa_id, "timestamp": "1700000000", "type": "text",
                           "text": { "body": text } }]
        }}]}]
    })
    .to_string();
    let response = app
        .http
        .post(format!("{}/webhooks/whatsapp/{slug}", app.base))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", whatsapp_signature(APP_SECRET, body.as_bytes()))
        .body(body)
        .send()
        .await
        .expect("sent");
    assert!(response.status().is_success(), "{}", response.status());
}

#[tokio::test]
async fn an_assistant_sees_messages_arrive_live_as_text_and_replies_from_a_suggestion() {
    let app = spawn_app().await;
    let provider = FakeProvider::start(Vec::new()).await;
    for slug in ["dental", "bakery"] {
        whatsapp_client(&app, slug, &provider).await;
    }
    app.person("ana@example.com", "assistant", None).await;
    app.assign("dental", &["ana@example.com"]).await;
    let article = json!({ "language": "es", "title": "Horario", "questions": ["¿Abrís mañana?", "¿Qué horario tenéis?"],
                          "body": "Abrimos de 9 a 17, {{ contact.name }}.", "shortcut": "horario" });
    let (status, created) = app.post("/api/v1/clients/dental/kb/articles", &app.admin, article).await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{created}");

    let browser = Browser::start("inbox").await;
    browser.sign_in(&app, "ana@example.com").await;
    browser.element("p.empty").await;

    // A customer of a client Ana serves writes; one of a client she does not serve writes too. Only the first
    // appears, without a reload, and its row follows the conversation: the acknowledgement, then the
    // customer's next message, markup shown as text.
    post_whatsapp(&app, "bakery", "wamid.bakery1", "Oleg", "Хліб є?").await;
    post_whatsapp(&app, "dental", "wamid.dental1", "Jordi <b>Puig</b>", "Hola").await;
    browser.element("ol.conversations li").await;
    let acknowledged = "//ol[@class='conversations']/li[contains(., 'Te respondemos enseguida')]";
    browser
        .client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath(acknowledged))
        .await
        .expect("acknowledged");
    let markup = "<img src=x onerror=\"window.__pwned=1\"><script>window.__pwned=2</script> ¿Abrís mañana? 🦷";
    post_whatsapp(&app, "dental", "wamid.dental2", "Jordi <b>Puig</b>", markup).await;
    let row = browser
        .client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath("//ol[@class='conversations']/li[contains(., '¿Abrís mañana?')]"))
        .await
        .expect("the customer's next message shows");
    browser.screenshot("message-arrived").await;
    let preview = row.find(Locator::Css(".preview")).await.expect("a preview").text().await.expect("text");
    assert_eq!(preview, markup);
    let contact = row.find(Locator::Css(".contact")).await.expect("a contact").text().await.expect("text");
    assert_eq!(contact, "Jordi <b>Puig</b>");
    assert!(row.find_all(Locator::Css("img, script, b")).await.expect("searched").is_empty(), "no markup ran");
    let pwned = browser.client.execute("return window.__pwned === undefined", vec![]).await.expect("executed");
    assert_eq!(pwned, json!(true), "no script of the customer's ran");
    let rows = browser.client.find_all(Locator::Css("ol.conversations li")).await.expect("rows");
    assert_eq!(rows.len(), 1, "the bakery's customer is not in Ana's inbox");
    let live = browser.element(".live.on").await.text().await.expect("text");
    assert_eq!(live, "Live");

    // `a` assigns it to Ana: it leaves the unassigned and joins hers.
    browser.press('a').await;
    let select = browser.element("select[name=assignee]").await;
    select.select_by_value("none").await.expect("selected");
    browser.element("p.empty").await;
    select.select_by_value("me").await.expect("selected");
    browser.element("ol.conversations li").await;
    browser.screenshot("assigned-to-me").await;

    // Enter opens it: the client card, the thread, and suggestions from the client's knowledge base. Pressing
    // 1 starts the reply from the first; edited and sent, it reaches the provider and the pick is recorded.
    let enter = char::from(Key::Enter).to_string();
    browser.element("ol.conversations li").await.send_keys(&enter).await.expect("Enter on the row");
    let card = browser.element("main.conversation .card").await.text().await.expect("text");
    assert!(card.contains("Client dental") && card.contains("open now"), "no hours set: always open; {card}");
    let suggestion = browser.element(".suggestions li h3").await.text().await.expect("text");
    assert_eq!(suggestion, "1. Horario");
    // Why: the snippet with the matches marked; the contact's name in it is text, as everywhere.
    let snippet = browser.element(".suggestions li .snippet").await;
    assert_eq!(snippet.text().await.expect("text"), "Abrimos de 9 a 17, Jordi <b>Puig</b>.");
    assert!(snippet.find_all(Locator::Css("b")).await.expect("searched").is_empty(), "no markup from the name");
    browser.screenshot("conversation").await;
    browser.press('1').await;
    let composer = browser.element("#composer").await;
    let filled = composer.prop("value").await.expect("value").expect("a value");
    assert_eq!(filled, "Abrimos de 9 a 17, Jordi <b>Puig</b>.");
    composer.send_keys(" ¡Hasta pronto!").await.expect("typed");
    browser.element(".composer button[type=submit]").await.click().await.expect("clicked");
    let sent = "Abrimos de 9 a 17, Jordi <b>Puig</b>. ¡Hasta pronto!";
    let reply = provider.wait_until(|request| String::from_utf8_lossy(&request.body).contains("¡Hasta pronto!")).await;
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&reply.body).expect("JSON")["text"]["body"], sent);
    browser.element(".message.assistant").await;
    let drafted = browser.client.execute("return localStorage.length", vec![]).await.expect("executed");
    assert_eq!(drafted, json!(0), "the sent draft is not kept");
    let (_, report) = app.get("/api/v1/reports/summary", &app.admin).await;
    assert_eq!(report["total"]["suggestions"]["from_suggestion"], 1, "{report}");
    assert_eq!(report["total"]["suggestions"]["edited"], 1, "{report}");
    browser.screenshot("replied").await;

    // The provider refuses the next reply for good: it shows as not delivered, with the reason, and "Send
    // again" sends it once the cause is gone.
    provider.script_for("/", vec![crate::helpers::Behaviour::Status(400)]);
    browser.element("#composer").await.send_keys("¿Algo más?").await.expect("typed");
    browser.element(".composer button[type=submit]").await.click().await.expect("clicked");
    let dead = browser
        .text_of(".message.assistant:last-child .delivery", "not delivered", |text| text.starts_with("not delivered"))
        .await;
    assert!(dead.contains("400"), "{dead}");
    browser.screenshot("not-delivered").await;
    browser.element(".message.assistant:last-child button.retry").await.click().await.expect("clicked");
    browser.text_of(".message.assistant:last-child .delivery", "sent", |text| text == "sent").await;
    let tries = provider.received().iter().filter(|r| String::from_utf8_lossy(&r.body).contains("¿Algo más?")).count();
    assert_eq!(tries, 2, "refused once, then sent");

    // `/hor` and Tab put the article with that shortcut in, filled in for this contact.
    browser.element("#composer").await.send_keys("/hor").await.expect("typed");
    let offered = browser.text_of("#shortcuts", "the shortcut", |text| !text.is_empty()).await;
    assert_eq!(offered, "/horario Horario · Tab inserts it");
    browser.press(Key::Tab).await;
    let composer = browser.element("#composer").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while composer.prop("value").await.expect("value").as_deref() != Some("Abrimos de 9 a 17, Jordi <b>Puig</b>.") {
        assert!(tokio::time::Instant::now() < deadline, "the shortcut's text is put in");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser.retype("#composer", &char::from(Key::Backspace).to_string()).await;

    // The session ends with a reply half-written: the next call goes back to the sign-in, and signing in again
    // comes back to the conversation with the draft still there.
    browser.element("#composer").await.send_keys("Un momento, lo miro").await.expect("typed");
    browser.client.delete_all_cookies().await.expect("cookies deleted");
    browser.element(".actions button").await.click().await.expect("clicked");
    browser.element(".sign-in .notice").await;
    browser.element("#email").await.send_keys("ana@example.com").await.expect("typed");
    browser.element("#password").await.send_keys(PASSWORD).await.expect("typed");
    browser.element("button[type=submit]").await.click().await.expect("clicked");
    let composer = browser.element("main.conversation #composer").await;
    assert_eq!(composer.prop("value").await.expect("value").as_deref(), Some("Un momento, lo miro"));

    // Typing the address of a conversation of a client Ana does not serve shows nothing of it.
    let (_, bakery) = app.get("/api/v1/conversations?client=bakery", &app.admin).await;
    let other = bakery["conversations"][0]["id"].as_str().expect("the bakery's conversation");
    browser.client.goto(&format!("{}/#/c/{other}", app.base)).await.expect("navigated");
    let refused = browser.element("main.conversation .error").await.text().await.expect("text");
    assert_eq!(refused, "This conversation does not exist, or is not one of yours.");
    let page = browser.client.source().await.expect("the page");
    assert!(!page.contains("Oleg") && !page.contains("Хліб"), "nothing of the bakery's customer");

    // On a phone's width the inbox and the conversation fit: nothing wider than the screen.
    browser.client.set_window_size(390, 844).await.expect("resized");
    let fits = "return document.documentElement.scrollWidth <= window.innerWidth";
    browser.client.goto(&format!("{}/#/", app.base)).await.expect("navigated");
    browser.element("ol.conversations li").await;
    assert_eq!(browser.client.execute(fits, vec![]).await.expect("measured"), json!(true), "the inbox fits");
    browser.screenshot("phone-inbox").await;
    browser.element("ol.conversations li").await.click().await.expect("opened");
    browser.element(".suggestions li").await;
    assert_eq!(browser.client.execute(fits, vec![]).await.expect("measured"), json!(true), "the conversation fits");
    browser.screenshot("phone-conversation").await;

    // Signing out goes back to the sign-in page.
    browser.element("header.top button").await.click().await.expect("clicked");
    browser.element("#email").await;
    browser.close().await;
}

#[tokio::test]
async fn an_admin_edits_an_article_sees_a_stale_edit_as_a_conflict_and_the_next_suggestion_has_the_new_text() {
    let app = spawn_app().await;
    let provider = FakeProvider::start(Vec::new()).await;
    whatsapp_client(&app, "dental", &provider).await;
    app.person("marta@example.com", "admin", None).await;
    let article = json!({ "language": "es", "title": "Horario", "questions": ["¿Qué horario tenéis?"],
                          "body": "Abrimos de 9 a 17." });
    let (status, created) = app.post("/api/v1/clients/dental/kb/articles", &app.admin, article.clone()).await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{created}");

    let hostile = json!({ "language": "es", "title": "<img src=x onerror=\"window.__pwned=3\">Precios <script>window.__pwned=4</script>",
                          "body": "Una limpieza cuesta 60 €." });
    let (status, _) = app.post("/api/v1/clients/dental/kb/articles", &app.admin, hostile).await;
    assert_eq!(status, reqwest::StatusCode::CREATED);

    let browser = Browser::start("kb").await;
    browser.sign_in(&app, "marta@example.com").await;
    browser.element("header.top a[href='#/kb']").await.click().await.expect("clicked");
    let titles = browser.text_of("ul.articles", "the articles", |text| text.contains("Horario")).await;
    assert!(titles.contains("<img src=x onerror=\"window.__pwned=3\">Precios <script>"), "a title is text: {titles}");
    assert!(
        browser
            .client
            .find_all(Locator::Css("ul.articles img, ul.articles script"))
            .await
            .expect("searched")
            .is_empty()
    );
    let pwned = browser.client.execute("return window.__pwned === undefined", vec![]).await.expect("executed");
    assert_eq!(pwned, json!(true), "nothing of the title ran");
    browser.element("ul.articles li[data-id=horario] a").await.click().await.expect("clicked");
    let body = browser.element("#body").await;
    assert_eq!(body.prop("value").await.expect("value").as_deref(), Some("Abrimos de 9 a 17."));

    // The preview fills the template in as it is typed (ChromeDriver types only the Basic Multilingual Plane:
    // a sun, not a tooth), and names the line of a mistake.
    browser.retype("#body", "Abrimos de 8 a 20, {{ contact.first_name }}.\n¡Os esperamos! {{ contact.phone }}").await;
    let problem = browser.text_of("#preview-problem", "the problem", |text| text.starts_with("Line 2:")).await;
    assert!(problem.contains("contact.phone"), "{problem}");
    browser.screenshot("template-problem").await;
    browser.retype("#body", "Abrimos de 8 a 20, {{ contact.first_name }}.\n¡Os esperamos! ☀").await;
    browser
        .text_of("#preview-problem", "the filled-in text", |text| text == "Abrimos de 8 a 20, Núria.\n¡Os esperamos! ☀")
        .await;
    browser.retype("#sample", "Оксана Шевченко").await;
    browser
        .text_of("#preview-problem", "the text for the contact typed", |text| {
            text.starts_with("Abrimos de 8 a 20, Оксана.")
        })
        .await;

    // Meanwhile another admin saves version 2. Saving version 1 shows both versions, and neither is lost.
    let mut theirs = article.clone();
    theirs["version"] = json!(1);
    theirs["body"] = json!("Abrimos de 10 a 14.");
    let (status, saved) = app
        .call(reqwest::Method::PUT, "/api/v1/clients/dental/kb/articles/horario", Some(&app.admin), Some(theirs))
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{saved}");
    browser.element("form.article button[type=submit]").await.click().await.expect("clicked");
    let conflict = browser.element(".conflict").await.text().await.expect("text");
    assert!(conflict.contains("Saved (version 2)") && conflict.contains("Abrimos de 10 a 14."), "{conflict}");
    assert!(conflict.contains("Yours (not saved)") && conflict.contains("¡Os esperamos! ☀"), "{conflict}");
    browser.screenshot("conflict").await;
    browser.element(".conflict .keep-mine").await.click().await.expect("clicked");
    browser.text_of("form.article .status", "saved", |text| text == "Saved (version 3).").await;
    let (_, stored) = app.get("/api/v1/clients/dental/kb/articles/horario", &app.admin).await;
    assert_eq!(stored["body"], "Abrimos de 8 a 20, {{ contact.first_name }}.\n¡Os esperamos! ☀");

    // The next customer who asks gets the new text, filled in for them.
    post_whatsapp(&app, "dental", "wamid.kb1", "Jordi Puig", "Hola, ¿qué horario tenéis?").await;
    browser.element("header.top a[href='#/']").await.click().await.expect("clicked");
    browser.element("ol.conversations li").await.click().await.expect("clicked");
    let filled = browser.text_of(".suggestions li .filled", "the new text", |text| !text.is_empty()).await;
    assert_eq!(filled, "Abrimos de 8 a 20, Jordi.\n¡Os esperamos! ☀");
    browser.screenshot("new-suggestion").await;

    // A zip of the kb/ layout uploads from the list page; the download link serves the same layout.
    let folder = tempfile::tempdir().expect("a folder");
    let archive = folder.path().join("dental-kb.zip");
    {
        use std::io::Write;
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&archive).expect("created"));
        zip.start_file("kb/dental/articles/urgencias.md", zip::write::SimpleFileOptions::default()).expect("zip");
        zip.write_all("+++\nlanguage = \"es\"\ntitle = \"Urgencias\"\n+++\nLlamad al 112.\n".as_bytes()).expect("zip");
        zip.finish().expect("zip");
    }
    browser.element("header.top a[href='#/kb']").await.click().await.expect("clicked");
    browser.element("input[name=archive]").await.send_keys(&archive.display().to_string()).await.expect("chosen");
    let imported = browser.text_of(".kb .notice", "the import's outcome", |text| !text.is_empty()).await;
    assert_eq!(imported, "Imported: 1 new, 0 changed, 0 unchanged.");
    browser.element("ul.articles li[data-id=urgencias]").await;
    let link = browser.element("a[download]").await.attr("href").await.expect("href");
    assert_eq!(link.as_deref(), Some("/api/v1/clients/dental/kb/export"));
    browser.screenshot("list").await;

    // The reports page: this month's figures, drawn as charts, and the same figures as CSV.
    browser.element("header.top a[href='#/reports']").await.click().await.expect("clicked");
    let totals = browser.text_of(".totals", "the totals", |text| text.contains("Conversations")).await;
    assert!(totals.contains("Conversations\n1") && totals.contains("Messages in\n1"), "{totals}");
    assert_eq!(browser.client.find_all(Locator::Css(".chart canvas")).await.expect("charts").len(), 2);
    let row = browser.element("table.figures tr[data-client=dental]").await.text().await.expect("text");
    assert!(row.starts_with("Client dental 1 1 1"), "one conversation, one message each way: {row}");
    let csv = browser.element("a.csv").await.attr("href").await.expect("href").expect("a link");
    let (status, text) = {
        let response = app.http.get(format!("{}{csv}", app.base)).bearer_auth(&app.admin).send().await.expect("sent");
        (response.status(), response.text().await.expect("text"))
    };
    assert_eq!(status, reqwest::StatusCode::OK);
    assert!(text.lines().count() > 1 && text.contains("dental"), "{text}");
    browser.screenshot("reports").await;
    browser.close().await;
}

#[tokio::test]
async fn a_client_uploads_a_rule_replays_it_over_past_messages_activates_it_and_the_next_message_is_acknowledged() {
    let app = spawn_app().await;
    let provider = FakeProvider::start(Vec::new()).await;
    whatsapp_client(&app, "dental", &provider).await;
    app.person("owner@example.com", "client", Some("dental")).await;
    // Two customers wrote before the rule existed: the client's default acknowledgement answered each. (Two
    // customers, not two messages of one: whether a second message of one conversation came before or after
    // the first one's acknowledgement depends on how fast the pipeline was, and so would the replay.)
    post_whatsapp(&app, "dental", "wamid.past1", "Jordi Puig", "Hola, ¿tenéis cita el lunes?").await;
    post_whatsapp_from(&app, "dental", "wamid.past2", "34600111333", "Marta Puig", "Me duele una muela <b>mucho</b>")
        .await;
    provider.wait_for(2, Duration::from_secs(10)).await;

    let browser = Browser::start("plugins").await;
    browser.sign_in(&app, "owner@example.com").await;
    let nav = browser.element("header.top nav").await.text().await.expect("text");
    assert_eq!(nav, "Rules\nKnowledge base\nReports", "a client's person has no inbox");
    browser.element("main.plugins p.empty").await;
    // The limits the client's plugins run under are shown beside the upload.
    let limits = format!(
        "Each call may use 32 MiB of memory, 250 M instructions and {} ms; components up to 48 MiB.",
        crate::helpers::TEST_DEADLINE_MS
    );
    browser.text_of("form.upload p.limits", "the client's limits", |text| text == limits).await;

    // Upload the component as built, with its configuration.
    let folder = tempfile::tempdir().expect("a folder");
    let wasm = folder.path().join("business_hours_ack.wasm");
    std::fs::write(&wasm, crate::plugins::component("business_hours_ack")).expect("written");
    browser.element("#component").await.send_keys(&wasm.display().to_string()).await.expect("chosen");
    browser.element("#plugin-name").await.send_keys("ack").await.expect("typed");
    browser.element("#plugin-version").await.send_keys("1.0.0").await.expect("typed");
    browser.retype("#plugin-config", &crate::plugins::ack_config("¡Hola! Una persona te responde pronto.")).await;
    browser.element("form.upload button[type=submit]").await.click().await.expect("clicked");
    browser.text_of("main.plugins .status", "the upload", |text| text.starts_with("ack 1.0.0 uploaded")).await;
    let row = browser.element("tr[data-state=inactive]").await;
    let id = row.attr("data-id").await.expect("attr").expect("an id");

    // A replay over the past messages shows where it would decide otherwise, message by message.
    row.find(Locator::Css("button.replay")).await.expect("a replay button").click().await.expect("clicked");
    let summary = browser.text_of(".replay .summary", "the replay", |text| !text.is_empty()).await;
    assert_eq!(summary, "2 recent messages: 2 decided differently, 0 failed.");
    let items = browser.client.find_all(Locator::Css(".replay-items li.differs")).await.expect("items");
    assert_eq!(items.len(), 2);
    let first = items[1].text().await.expect("text");
    assert!(first.contains("Me duele una muela <b>mucho</b>"), "the message, as text: {first}");
    assert!(first.contains("acknowledge “¡Hola! Una persona te responde pronto.”"), "{first}");
    assert!(first.contains("Now (the client's defaults)"), "{first}");
    browser.screenshot("replay").await;

    // Activated, it acknowledges the next customer (the first was acknowledged minutes ago: not again).
    browser.element(&format!("tr[data-id={id}] button.activate")).await.click().await.expect("clicked");
    browser.text_of("main.plugins .status", "the activation", |text| text == "ack 1.0.0 is now active.").await;
    browser.element(&format!("tr[data-id={id}][data-state=active]")).await;
    post_whatsapp_from(&app, "dental", "wamid.next", "34611222333", "Núria Vila", "Bon dia, ¿abrís hoy?").await;
    let ack = provider
        .wait_until(|request| String::from_utf8_lossy(&request.body).contains("Una persona te responde pronto"))
        .await;
    assert!(String::from_utf8_lossy(&ack.body).contains("34611222333"), "sent to the new customer");

    // The decision log shows the chain's decision, applied, and the plugin's own run, with the reason.
    browser.client.refresh().await.expect("reloaded");
    let log = browser.text_of(".decisions", "the plugin's decision", |text| text.contains("ack 1.0.0")).await;
    assert!(
        log.contains("the chain · applied\nacknowledge “¡Hola! Una persona te responde pronto.”\nbecause: ack: open"),
        "{log}"
    );
    browser.screenshot("activated").await;

    // Nothing of another client's rules is reachable by address.
    app.create_client("bakery").await;
    browser.client.goto(&format!("{}/#/plugins/bakery", app.base)).await.expect("navigated");
    let refused = browser.text_of("main.plugins .error", "a refusal", |text| !text.is_empty()).await;
    assert!(refused.contains("not found") || refused.contains("does not exist"), "{refused}");
    browser.close().await;
}

#[tokio::test]
async fn an_admin_adds_an_assistant_who_then_sees_only_the_clients_she_serves() {
    let app = spawn_app().await;
    let provider = FakeProvider::start(Vec::new()).await;
    for slug in ["dental", "bakery"] {
        whatsapp_client(&app, slug, &provider).await;
    }
    let secret = json!({ "language": "es", "title": "Precios secretos", "body": "SECRETO-DENTAL" });
    let (status, _) = app.post("/api/v1/clients/dental/kb/articles", &app.admin, secret).await;
    assert_eq!(status, reqwest::StatusCode::CREATED);
    let bread = json!({ "language": "es", "title": "Pan del día", "body": "Tenemos pan fresco cada mañana 🥖." });
    let (status, _) = app.post("/api/v1/clients/bakery/kb/articles", &app.admin, bread).await;
    assert_eq!(status, reqwest::StatusCode::CREATED);
    post_whatsapp(&app, "dental", "wamid.d1", "Jordi Puig", "SECRETO-CLIENTE-DENTAL").await;
    post_whatsapp(&app, "bakery", "wamid.b1", "Оксана", "¿Tenéis pan fresco?").await;
    app.person("marta@example.com", "admin", None).await;

    // Marta adds Berta, who serves the bakery only.
    let browser = Browser::start("people").await;
    browser.sign_in(&app, "marta@example.com").await;
    browser.element("header.top a[href='#/people']").await.click().await.expect("clicked");
    browser.element("#person-email").await.send_keys("berta@example.com").await.expect("typed");
    browser.element("#person-name").await.send_keys("Berta Ferrer").await.expect("typed");
    browser.element("#person-password").await.send_keys(PASSWORD).await.expect("typed");
    browser.element("form.new-person button[type=submit]").await.click().await.expect("clicked");
    browser.text_of("main.people .status", "the new person", |text| text == "Berta Ferrer added.").await;
    let row = "tr[data-email='berta@example.com']";
    browser.element(&format!("{row} input[name=serves-bakery]")).await.click().await.expect("ticked");
    browser.element(&format!("{row} .save-serves")).await.click().await.expect("clicked");
    browser.text_of("main.people .status", "saved", |text| text == "Saved the clients Berta Ferrer serves.").await;
    let (_, people) = app.get("/api/v1/people", &app.admin).await;
    let berta =
        people["people"].as_array().expect("people").iter().find(|p| p["email"] == "berta@example.com").cloned();
    assert_eq!(berta.expect("Berta")["clients"], json!(["bakery"]));

    // A token made here is shown once, and revoked here it stops working.
    browser.element("input[name=token-name]").await.send_keys("nightly export").await.expect("typed");
    browser.element("section.tokens button[type=submit]").await.click().await.expect("clicked");
    let shown = browser.element(".secret code").await.text().await.expect("text");
    let (status, _) = app.get("/api/v1/me", &shown).await;
    assert_eq!(status, reqwest::StatusCode::OK, "the token shown works");
    browser.screenshot("people").await;
    let id = shown.split('_').nth(1).expect("a token id");
    browser.element(&format!("tr[data-token='{id}'] button.revoke")).await.click().await.expect("clicked");
    browser.element(&format!("tr[data-token='{id}'].revoked")).await;
    let (status, _) = app.get("/api/v1/me", &shown).await;
    assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED, "revoked");

    // Berta signs in: the bakery's conversation and knowledge base (read-only), nothing of the dentist's.
    browser.element("header.top button").await.click().await.expect("signed out");
    browser.element("#email").await;
    browser.sign_in(&app, "berta@example.com").await;
    let nav = browser.element("header.top nav").await.text().await.expect("text");
    assert_eq!(nav, "Inbox\nKnowledge base\nReports");
    let row = browser.text_of("ol.conversations", "the bakery's conversation", |text| text.contains("Оксана")).await;
    assert!(!row.contains("SECRETO"), "{row}");
    // Her suggestion for it comes from the bakery's knowledge base, the matching word marked.
    browser.element("ol.conversations li").await.click().await.expect("opened");
    browser.element(".suggestions li .snippet mark").await;
    let mut marked = Vec::new();
    for mark in browser.client.find_all(Locator::Css(".suggestions li:first-child .snippet mark")).await.expect("marks")
    {
        marked.push(mark.text().await.expect("text"));
    }
    assert_eq!(marked, ["Tenemos", "pan", "fresco"], "the words that match the customer's, stemmed");
    browser.element("header.top a[href='#/kb']").await.click().await.expect("clicked");
    browser.element("ul.articles li a").await.click().await.expect("clicked");
    let body = browser.element("#body").await;
    assert_eq!(body.prop("value").await.expect("value").as_deref(), Some("Tenemos pan fresco cada mañana 🥖."));
    assert_eq!(body.attr("readonly").await.expect("attr").as_deref(), Some("true"), "an assistant reads");
    assert!(browser.client.find_all(Locator::Css("form.article button[type=submit]")).await.expect("found").is_empty());
    browser.screenshot("assistant-kb").await;
    for address in ["#/kb/dental", "#/kb/dental/a/precios-secretos", "#/people", "#/plugins/dental"] {
        browser.client.goto(&format!("{}/{address}", app.base)).await.expect("navigated");
        browser.text_of("main .error", "a refusal", |text| !text.is_empty()).await;
        let page = browser.client.source().await.expect("the page");
        assert!(!page.contains("SECRETO") && !page.contains("Precios"), "{address} shows nothing of the dentist's");
    }
    browser.close().await;
}

/// The console's speed with a busy inbox. A benchmark, not a check (times are never asserted): run it with
/// `cargo test --release --test api -- --ignored --nocapture browser::console_benchmark` and copy what it
/// prints to `BENCHMARKS.md`.
#[tokio::test]
#[ignore = "a benchmark: run by hand; its figures are in BENCHMARKS.md"]
async fn console_benchmark() {
    const OPEN: usize = 1_000;
    const ARRIVALS: usize = 20;
    let app = spawn_app().await;
    let token = app.create_client("busy").await;
    app.person("marta@example.com", "admin", None).await;
    let names = ["Núria Vila", "Оксана Шевченко", "Giulia Bianchi", "Emily Clarke", "Jordi Puig 🦷"];
    let processed = app.metric("recado_processed_messages_total").await;
    // Sixteen at a time: more would be refused by the per-client ingest limit (and measure that instead).
    use futures::StreamExt as _;
    futures::stream::iter((0..OPEN).map(|n| {
        let (app, token) = (&app, &token);
        async move {
            let body = json!({ "external_id": format!("open-{n}"), "from": { "handle": format!("+3460{n:07}"),
                               "name": names[n % names.len()] }, "text": format!("Missatge número {n}: teniu hora dijous?") });
            let (status, answer) = app.post("/api/v1/clients/busy/messages", token, body).await;
            assert_eq!(status, reqwest::StatusCode::CREATED, "{answer}");
        }
    }))
    .buffer_unordered(16)
    .collect::<Vec<()>>()
    .await;
    while app.metric("recado_processed_messages_total").await < processed + OPEN as f64 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let browser = Browser::start("benchmark").await;
    browser.sign_in(&app, "marta@example.com").await;
    let measured = |name: &'static str| {
        let client = browser.client.clone();
        async move {
            let script = format!("return performance.getEntriesByName('{name}').map((entry) => entry.duration)");
            let durations = client.execute(&script, vec![]).await.expect("executed");
            durations.as_array().expect("durations").iter().map(|d| d.as_f64().expect("ms")).collect::<Vec<f64>>()
        }
    };
    let mut render = Vec::new();
    let mut load = Vec::new();
    for _ in 0..5 {
        browser.client.refresh().await.expect("reloaded");
        browser.text_of("p.count", "the whole inbox", |text| text.starts_with(&format!("{OPEN} conversations"))).await;
        render.extend(measured("recado.inbox.render").await);
        load.extend(measured("recado.inbox.load").await);
    }
    browser.screenshot("busy-inbox").await;

    // New messages reaching the open inbox: the browser notes when each one's row appears.
    browser
        .client
        .execute(
            "window.__seen = {}; new MutationObserver(() => {
               for (const row of document.querySelectorAll('ol.conversations li')) {
                 const match = row.textContent.match(/ARRIVAL-(\\d+)/);
                 if (match && !(match[1] in window.__seen)) window.__seen[match[1]] = performance.timeOrigin + performance.now();
               }
             }).observe(document.body, { childList: true, subtree: true, characterData: true });",
            vec![],
        )
        .await
        .expect("observer installed");
    let mut latencies = Vec::new();
    for n in 0..ARRIVALS {
        let sent =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64() * 1000.0;
        // The name marks the row (its preview soon shows the acknowledgement instead of the message).
        let body = json!({ "external_id": format!("arrival-{n}"), "from": { "handle": format!("+3461{n:07}"),
                           "name": format!("ARRIVAL-{n}") }, "text": "Hola, teniu hora avui?" });
        let (status, _) = app.post("/api/v1/clients/busy/messages", &token, body).await;
        assert_eq!(status, reqwest::StatusCode::CREATED);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let seen = loop {
            let seen =
                browser.client.execute(&format!("return window.__seen['{n}'] || null"), vec![]).await.expect("read");
            if let Some(at) = seen.as_f64() {
                break at;
            }
            assert!(tokio::time::Instant::now() < deadline, "ARRIVAL-{n} never showed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        latencies.push(seen - sent);
    }
    let summary = |label: &str, mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        let at = |q: f64| values[((values.len() as f64 - 1.0) * q).round() as usize];
        println!("{label}: n={} median={:.0} ms p95={:.0} ms max={:.0} ms", values.len(), at(0.5), at(0.95), at(1.0));
    };
    summary(&format!("inbox of {OPEN} open conversations, drawing"), render);
    summary(&format!("inbox of {OPEN} open conversations, reading every page and drawing"), load);
    summary(&format!("a new message reaching the open inbox of {OPEN}"), latencies);
    browser.close().await;
}

/// The README's pictures: the demo, played, as an assistant sees it. Run by hand with
/// `cargo test --test api -- --ignored browser::readme_screenshots`; it writes `docs/screenshots/*.png`.
#[tokio::test]
#[ignore = "makes the README's pictures: run by hand"]
async fn readme_screenshots() {
    let app = spawn_app().await;
    let kb = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kb");
    let (clients, tokens) = recado::tools::demo::seed(&app.db, &kb).await.expect("the demo seeds");
    let provider = recado::tools::play::start_provider().await.expect("a provider");
    let secrets = recado::tools::play::connect(&app.db, &clients, &provider).await.expect("channels");
    let script = recado::tools::play::script(&app.db, &clients, 4).await.expect("a script");
    recado::tools::play::play(&app.base, &clients, &secrets, &script, Duration::from_millis(300))
        .await
        .expect("played");
    let ana = tokens.people.iter().find(|person| person.email.starts_with("ana@")).expect("Ana");

    let browser = Browser::start("readme").await;
    browser.client.set_window_size(1280, 760).await.expect("sized");
    browser.sign_in_with(&app, &ana.email, &ana.password).await;
    browser.element("ol.conversations li").await;
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
    std::fs::create_dir_all(&folder).expect("folder");
    std::fs::write(folder.join("inbox.png"), browser.client.screenshot().await.expect("png")).expect("written");
    let dental = "//ol[@class='conversations']/li[contains(., 'Dental')]";
    browser.client.find(Locator::XPath(dental)).await.expect("a dental conversation").click().await.expect("clicked");
    browser.element(".suggestions li").await;
    browser.press('1').await;
    browser.text_of("#composer", "a suggestion", |_| true).await;
    std::fs::write(folder.join("conversation.png"), browser.client.screenshot().await.expect("png")).expect("written");
    browser.close().await;
}
