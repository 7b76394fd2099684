/**
 * URLs as they may be quoted in messages, logs and errors: a query or fragment (a SAS token, a signature) becomes
 * `?<redacted>` and user info becomes `<redacted>@`. Anything that is not a URL (a local path) is returned as it is.
 */
export function redactUrl(text: string): string {
    const match = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*@)?([^?#]*)([?#][\s\S]*)?$/i.exec(text);
    if (!match) return text;
    const [, scheme, userInfo, rest, query] = match;
    return `${scheme}${userInfo ? "<redacted>@" : ""}${rest}${query ? "?<redacted>" : ""}`;
}

/** Every URL inside a message, redacted as {@link redactUrl} does. */
export function redactUrls(message: string): string {
    return message.replace(/\b[a-z][a-z0-9+.-]*:\/\/[^\s"']+/gi, (url) => redactUrl(url));
}
