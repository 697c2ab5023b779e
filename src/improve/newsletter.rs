//! Newsletter archives over HTTP(S), read with `scraper` (html5ever: the browsers' parsing
//! algorithm, so malformed markup reads as a browser would read it). One parser per known
//! archive layout, so a layout change breaks that source alone, plus the generic `links`
//! parser: every article link on the page with its title.

use reqwest::Url;
use scraper::{ElementRef, Html, Selector};

use super::{Found, SourceError};
use crate::config::{ImproveConfig, ImproveSource, NewsletterParser};

/// Links whose text has fewer words are navigation ("Home", "Sign in"), not articles.
const MIN_TITLE_WORDS: usize = 3;
/// Articles read per page.
const MAX_ITEMS: usize = 50;

pub(super) async fn fetch(
    improve: &ImproveConfig,
    source: &ImproveSource,
) -> Result<Vec<Found>, SourceError> {
    let url = source.url.clone().unwrap_or_default();
    let page = get(&url, improve).await?;
    let base = Url::parse(&url).map_err(|e| SourceError::Http {
        url: url.clone(),
        detail: e.to_string(),
    })?;
    parse(source.parser, &page, &base)
}

/// The page's text, refused once it passes `max_page_size` (read in chunks, so an endless
/// page costs no more memory than the limit).
async fn get(url: &str, improve: &ImproveConfig) -> Result<String, SourceError> {
    let http = |e: reqwest::Error| SourceError::Http {
        url: url.to_owned(),
        detail: e.without_url().to_string(),
    };
    // No timeout of its own: the scan's `source_timeout` bounds the whole read, so one limit
    // (and one message) applies.
    let client = reqwest::Client::builder()
        .user_agent(concat!("oxi/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(http)?;
    let mut response = client.get(url).send().await.map_err(http)?;
    let status = response.status();
    if !status.is_success() {
        return Err(SourceError::Status {
            url: url.to_owned(),
            status: status.as_u16(),
        });
    }
    let limit = improve.max_page_size.0.as_u64();
    let too_large = || SourceError::TooLarge {
        url: url.to_owned(),
        limit,
    };
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(http)? {
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Reads a page with its source's parser.
pub(super) fn parse(
    parser: NewsletterParser,
    page: &str,
    base: &Url,
) -> Result<Vec<Found>, SourceError> {
    let html = Html::parse_document(page);
    let items = match parser {
        NewsletterParser::Links => links(&html, base),
        NewsletterParser::Substack => substack(&html, base),
        NewsletterParser::Buttondown => buttondown(&html, base),
    };
    if items.is_empty() {
        return Err(SourceError::Layout {
            url: base.to_string(),
            parser: parser.as_str(),
            what: match parser {
                NewsletterParser::Links => "article links",
                NewsletterParser::Substack => "a.post-preview-title posts",
                NewsletterParser::Buttondown => "email-list entries",
            },
        });
    }
    Ok(items)
}

fn selector(css: &str) -> Option<Selector> {
    Selector::parse(css).ok()
}

fn text_of(element: ElementRef<'_>) -> String {
    element
        .text()
        .collect::<Vec<_>>()
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// An article link's absolute URL: http(s), not the page itself or a fragment of it.
fn article_url(href: &str, base: &Url) -> Option<Url> {
    let url = base.join(href.trim()).ok()?;
    let same_page = url.path() == base.path() && url.host_str() == base.host_str();
    (matches!(url.scheme(), "http" | "https") && !same_page && url.path() != "/").then_some(url)
}

/// Pushes a link once per URL.
fn push(items: &mut Vec<Found>, url: &Url, title: String, summary: String, base: &Url) {
    if items.len() >= MAX_ITEMS || items.iter().any(|f| f.url == url.as_str()) {
        return;
    }
    items.push(Found {
        url: url.to_string(),
        title,
        summary,
        target: base.host_str().unwrap_or_default().to_owned(),
        published_at_ms: None,
    });
}

/// Every link whose text reads as a title (three words or more), in page order.
fn links(html: &Html, base: &Url) -> Vec<Found> {
    let mut items = Vec::new();
    let Some(anchors) = selector("a[href]") else {
        return items;
    };
    for a in html.select(&anchors) {
        let title = text_of(a);
        if title.split_whitespace().count() < MIN_TITLE_WORDS {
            continue;
        }
        if let Some(url) = a.value().attr("href").and_then(|h| article_url(h, base)) {
            push(&mut items, &url, title, String::new(), base);
        }
    }
    items
}

/// A Substack archive: each post's `a.post-preview-title` (or the `data-testid` newer pages
/// carry), with the `.post-preview-description` beside it.
fn substack(html: &Html, base: &Url) -> Vec<Found> {
    let mut items = Vec::new();
    let (Some(titles), Some(description)) = (
        selector("a.post-preview-title, a[data-testid=\"post-preview-title\"]"),
        selector(".post-preview-description"),
    ) else {
        return items;
    };
    for a in html.select(&titles) {
        let Some(url) = a.value().attr("href").and_then(|h| article_url(h, base)) else {
            continue;
        };
        // The description sits in the same preview block as the title link.
        let summary = a
            .ancestors()
            .filter_map(ElementRef::wrap)
            .find_map(|block| block.select(&description).next())
            .map(text_of)
            .unwrap_or_default();
        push(&mut items, &url, text_of(a), summary, base);
    }
    items
}

/// A Buttondown archive: `.email-list` entries, each a link around an `h2`/`h3` title.
fn buttondown(html: &Html, base: &Url) -> Vec<Found> {
    let mut items = Vec::new();
    let (Some(entries), Some(heading)) = (selector(".email-list a[href]"), selector("h2, h3"))
    else {
        return items;
    };
    for a in html.select(&entries) {
        let Some(title) = a.select(&heading).next().map(text_of) else {
            continue;
        };
        if let Some(url) = a.value().attr("href").and_then(|h| article_url(h, base)) {
            push(&mut items, &url, title, String::new(), base);
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("https://news.example/archive").unwrap()
    }

    #[test]
    fn links_keeps_titled_article_links_once() {
        let page = r##"<nav><a href="/">Home</a><a href="/about">About us</a></nav>
            <a href="/p/agents-that-review">Agents that review their own pull requests</a>
            <a href="https://news.example/p/agents-that-review">Agents that review again</a>
            <a href="mailto:x@example.com">Write to us any time</a>
            <a href="#top">Back to the top</a>"##;
        let items = parse(NewsletterParser::Links, page, &base()).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].url, "https://news.example/p/agents-that-review");
        assert_eq!(items[0].title, "Agents that review their own pull requests");
    }

    #[test]
    fn a_changed_layout_is_a_failure_naming_the_parser() {
        let error = parse(NewsletterParser::Substack, "<p>new design</p>", &base()).unwrap_err();
        assert!(
            error.to_string().contains("substack parser found no"),
            "{error}"
        );
    }
}
