//! Which of the filter's endpoints a request is for, from Envoy's normalized `:path` and `:method`.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Outside the prefix: not ours, the request continues untouched.
    PassThrough,
    Healthz,
    /// `PUT token`: the token service's 201 body.
    Token,
    /// `GET credentials`: the AWS container-credentials format (SDKs refresh from it).
    Credentials,
    NotFound,
    MethodNotAllowed {
        allow: &'static str,
    },
}

/// Which of the two minting endpoints a request came through: it decides the 200/201 body and
/// the metrics family, and travels with the request through parking and the STS callout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Token,
    Credentials,
}

impl Endpoint {
    /// The `route=` field of the mint log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Token => "token",
            Endpoint::Credentials => "credentials",
        }
    }
}

pub fn route(prefix: &str, method: &str, path: &str) -> Route {
    // The query and fragment never select an endpoint.
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let Some(rest) = path.strip_prefix(prefix) else {
        return Route::PassThrough;
    };
    match rest {
        "token" if method == "PUT" => Route::Token,
        "token" => Route::MethodNotAllowed { allow: "PUT" },
        "credentials" if method == "GET" => Route::Credentials,
        "credentials" => Route::MethodNotAllowed { allow: "GET" },
        "healthz" if method == "GET" || method == "HEAD" => Route::Healthz,
        "healthz" => Route::MethodNotAllowed { allow: "GET, HEAD" },
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const P: &str = "/apis/sts/";

    #[test]
    fn endpoints() {
        assert_eq!(route(P, "PUT", "/apis/sts/token"), Route::Token);
        assert_eq!(route(P, "PUT", "/apis/sts/token?x=1"), Route::Token);
        assert_eq!(route(P, "GET", "/apis/sts/healthz"), Route::Healthz);
        assert_eq!(route(P, "HEAD", "/apis/sts/healthz"), Route::Healthz);
        for m in ["GET", "POST", "DELETE", "HEAD", "OPTIONS", "PATCH"] {
            assert_eq!(
                route(P, m, "/apis/sts/token"),
                Route::MethodNotAllowed { allow: "PUT" }
            );
        }
        assert_eq!(
            route(P, "PUT", "/apis/sts/healthz"),
            Route::MethodNotAllowed { allow: "GET, HEAD" }
        );
    }

    #[test]
    fn credentials_endpoint() {
        assert_eq!(route(P, "GET", "/apis/sts/credentials"), Route::Credentials);
        assert_eq!(
            route(P, "GET", "/apis/sts/credentials?tenant=blue"),
            Route::Credentials
        );
        for m in ["PUT", "POST", "DELETE", "HEAD", "OPTIONS", "PATCH", "get"] {
            assert_eq!(
                route(P, m, "/apis/sts/credentials"),
                Route::MethodNotAllowed { allow: "GET" },
                "{m}"
            );
        }
        for p in [
            "/apis/sts/credentials/",
            "/apis/sts/credential",
            "/apis/sts/Credentials",
            "/apis/sts/credentials/x",
        ] {
            assert_eq!(route(P, "GET", p), Route::NotFound, "{p}");
        }
        // The token route is unchanged by it.
        assert_eq!(route(P, "PUT", "/apis/sts/token"), Route::Token);
        assert_eq!(
            route(P, "GET", "/apis/sts/token"),
            Route::MethodNotAllowed { allow: "PUT" }
        );
    }

    #[test]
    fn other_paths() {
        for p in [
            "/apis/sts/",
            "/apis/sts/token/",
            "/apis/sts//token",
            "/apis/sts/%74oken",
            "/apis/sts/./token",
            "/apis/sts/tokens",
        ] {
            assert_eq!(route(P, "PUT", p), Route::NotFound, "{p}");
        }
        for p in [
            "/APIS/sts/token",
            "/apis/stsx/token",
            "/",
            "",
            "/keycloak/realms",
        ] {
            assert_eq!(route(P, "PUT", p), Route::PassThrough, "{p}");
        }
    }
}
