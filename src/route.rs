//! Which of the filter's endpoints a request is for, from Envoy's normalized `:path` and `:method`.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Outside the prefix: not ours, the request continues untouched.
    PassThrough,
    Healthz,
    Token,
    NotFound,
    MethodNotAllowed {
        allow: &'static str,
    },
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
