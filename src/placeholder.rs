//! Placeholder glue until the filter lands (answers healthz, 503 elsewhere under the prefix).
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;
impl Context for Root {}
impl RootContext for Root {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http))
    }
}

struct Http;
impl Context for Http {}
impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let path = self.get_http_request_header(":path").unwrap_or_default();
        if path.starts_with("/apis/sts/healthz") {
            self.send_http_response(200, vec![("content-type", "application/json")], Some(b"{\"Status\": \"ok\"}"));
            return Action::Pause;
        }
        if path.starts_with("/apis/sts/") {
            self.send_http_response(503, vec![("content-type", "application/json")], Some(b"{\"detail\": \"not implemented yet\"}"));
            return Action::Pause;
        }
        Action::Continue
    }
}
