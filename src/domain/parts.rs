//! What a customer message is made of, beyond its text: media, places, shared contacts, button choices,
//! orders, and the context it was sent in (the message it answers, whether it was forwarded, the ad it came
//! from).
//!
//! Channels parse their payloads into [`Part`]s and a [`Context`]; the store keeps both as JSON beside the
//! message's text, and [`readable_text`] gives the text everyone else (rules, search, previews) reads, so
//! a caption or an order note is never lost behind a placeholder.

use serde::{Deserialize, Serialize};

/// One part of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// A photo, video, voice note, document... held by the provider until downloaded.
    Media(Media),
    /// A place: coordinates, and a name and address when the customer picked one.
    Location(Location),
    /// Contact cards the customer shared.
    Contacts {
        /// The cards.
        contacts: Vec<SharedContact>,
    },
    /// A button or list choice the customer tapped.
    Choice {
        /// What the button said.
        title: String,
        /// The id or payload we gave the button, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The list row's description, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
    },
    /// An order from the business's catalogue.
    Order(Order),
    /// Something the channel sent that recado cannot show; kept so the assistant knows it arrived.
    Unsupported {
        /// The provider's name for it (`unsupported`, `poll`, `story`...).
        kind: String,
        /// The provider's explanation, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
}

/// What kind of file a media part is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// A photo.
    Image,
    /// A video.
    Video,
    /// A round Telegram video message.
    VideoNote,
    /// A GIF-like animation.
    Animation,
    /// A music or audio file.
    Audio,
    /// A voice note.
    Voice,
    /// Any other file.
    Document,
    /// A sticker.
    Sticker,
}

impl MediaKind {
    /// How the kind is named in readable text.
    pub fn label(self) -> &'static str {
        match self {
            Self::Image => "photo",
            Self::Video => "video",
            Self::VideoNote => "video message",
            Self::Animation => "animation",
            Self::Audio => "audio",
            Self::Voice => "voice message",
            Self::Document => "document",
            Self::Sticker => "sticker",
        }
    }
}

/// A file the customer sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Media {
    /// What kind of file.
    pub kind: MediaKind,
    /// The provider's id of the file (WhatsApp media id, Telegram `file_id`), used to download it.
    pub provider_id: String,
    /// The type the provider reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// The file's name, for documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// The text sent with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// Size in bytes, when the provider says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The sticker's emoji, for stickers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
}

/// A place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Location {
    /// Latitude in degrees.
    pub latitude: f64,
    /// Longitude in degrees.
    pub longitude: f64,
    /// The place's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// A link to it on a map.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A shared contact card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SharedContact {
    /// The name as shown.
    pub name: String,
    /// Phone numbers, as written on the card.
    #[serde(default)]
    pub phones: Vec<String>,
}

/// A catalogue order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Order {
    /// The catalogue it was placed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_id: Option<String>,
    /// What was ordered.
    pub items: Vec<OrderItem>,
    /// The note the customer wrote with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderItem {
    /// The product's id in the catalogue.
    pub product_id: String,
    /// How many.
    pub quantity: f64,
    /// Unit price, in `currency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    /// ISO 4217 code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// Where a message came from and what it refers to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Context {
    /// The provider's id of the message this one answers (ours or the customer's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// Forwarded from another chat.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forwarded: bool,
    /// Forwarded many times (WhatsApp marks chain messages).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub frequently_forwarded: bool,
    /// The ad or post the customer tapped to start writing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referral: Option<Referral>,
}

impl Context {
    /// Returns true if and only if nothing is known about the context.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A click-to-chat ad or post.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Referral {
    /// `ad` or `post`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_type: Option<String>,
    /// The ad's or post's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
    /// Its URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
    /// Its headline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headline: Option<String>,
    /// Its text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// What an outbound message carries beyond its text: how the channel must send it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Outbound {
    /// An approved WhatsApp template (the only thing WhatsApp delivers after the 24-hour window).
    Template {
        /// Its name at Meta.
        name: String,
        /// Its language code at Meta.
        language: String,
        /// Body parameters, in order.
        parameters: Vec<String>,
    },
    /// A file, with the message's text as its caption.
    Attachment {
        /// How the channel should present it.
        kind: MediaKind,
        /// The stored file.
        sha256: String,
        /// Its type.
        content_type: String,
        /// Its name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filename: Option<String>,
        /// Its size in bytes.
        size: u64,
        /// The caption (the message's text is the readable form, with the file described).
        #[serde(default)]
        caption: String,
    },
}

/// The text of a message as people and rules read it: the text itself, captions after a bracketed
/// description of each attachment, places and cards written out, an order's lines and note.
pub fn readable_text(parts: &[Part]) -> String {
    let pieces: Vec<String> = parts.iter().map(describe).filter(|piece| !piece.is_empty()).collect();
    if pieces.is_empty() { "[empty message]".to_owned() } else { pieces.join("\n") }
}

fn describe(part: &Part) -> String {
    match part {
        Part::Text { text } => text.clone(),
        Part::Media(media) => {
            let mut label = media.kind.label().to_owned();
            if let Some(filename) = &media.filename {
                label = format!("{label}: {filename}");
            } else if let Some(emoji) = &media.emoji {
                label = format!("{label} {emoji}");
            }
            match media.caption.as_deref().map(str::trim).filter(|caption| !caption.is_empty()) {
                Some(caption) => format!("[{label}] {caption}"),
                None => format!("[{label}]"),
            }
        }
        Part::Location(location) => {
            let place: Vec<&str> =
                [location.name.as_deref(), location.address.as_deref()].into_iter().flatten().collect();
            let coordinates = format!("{:.6}, {:.6}", location.latitude, location.longitude);
            if place.is_empty() {
                format!("[location: {coordinates}]")
            } else {
                format!("[location: {} ({coordinates})]", place.join(", "))
            }
        }
        Part::Contacts { contacts } => contacts
            .iter()
            .map(|contact| {
                if contact.phones.is_empty() {
                    format!("[contact: {}]", contact.name)
                } else {
                    format!("[contact: {} {}]", contact.name, contact.phones.join(", "))
                }
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Part::Choice { title, .. } => title.clone(),
        Part::Order(order) => {
            let lines: Vec<String> = order
                .items
                .iter()
                .map(|item| match (item.price, &item.currency) {
                    (Some(price), Some(currency)) => {
                        format!("{} x {} at {price} {currency}", item.quantity, item.product_id)
                    }
                    _ => format!("{} x {}", item.quantity, item.product_id),
                })
                .collect();
            let mut text = format!("[order: {}]", lines.join("; "));
            if let Some(note) = order.note.as_deref().map(str::trim).filter(|note| !note.is_empty()) {
                text = format!("{text} {note}");
            }
            text
        }
        Part::Unsupported { kind, detail } => {
            // WhatsApp names content it cannot deliver `unsupported`: do not say it twice.
            let label = if kind == "unsupported" {
                "unsupported message".to_owned()
            } else {
                format!("unsupported {kind} message")
            };
            match detail {
                Some(detail) => format!("[{label}: {detail}]"),
                None => format!("[{label}]"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captions_filenames_places_cards_and_order_notes_are_all_in_the_readable_text() {
        let parts = vec![
            Part::Media(Media {
                kind: MediaKind::Document,
                provider_id: "1".into(),
                mime_type: Some("application/pdf".into()),
                filename: Some("x-ray.pdf".into()),
                caption: Some("the crown broke".into()),
                size: None,
                emoji: None,
            }),
            Part::Location(Location {
                latitude: 41.3874,
                longitude: 2.1686,
                name: Some("Clínica".into()),
                address: Some("Carrer Gran 1".into()),
                url: None,
            }),
            Part::Contacts { contacts: vec![SharedContact { name: "Núria".into(), phones: vec!["+34 600".into()] }] },
            Part::Order(Order {
                catalog_id: None,
                items: vec![OrderItem {
                    product_id: "SODA".into(),
                    quantity: 2.0,
                    price: Some(10.0),
                    currency: Some("EUR".into()),
                }],
                note: Some("no ice".into()),
            }),
        ];
        let text = readable_text(&parts);
        for expected in
            ["[document: x-ray.pdf] the crown broke", "Clínica, Carrer Gran 1", "Núria +34 600", "2 x SODA", "no ice"]
        {
            assert!(text.contains(expected), "{expected:?} missing from {text:?}");
        }
        assert_eq!(readable_text(&[]), "[empty message]");
    }

    #[test]
    fn parts_round_trip_through_json_with_a_type_tag() {
        let part = Part::Choice { title: "Yes".into(), id: Some("confirm".into()), description: None };
        let json = serde_json::to_value(&part).expect("serialises");
        assert_eq!(json, serde_json::json!({ "type": "choice", "title": "Yes", "id": "confirm" }));
        assert_eq!(serde_json::from_value::<Part>(json).expect("parses"), part);
    }
}
