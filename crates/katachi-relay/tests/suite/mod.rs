mod device_flow;
mod signed_calls;
mod store_backends;
pub mod support;
mod tls;
mod tunnel;
mod web_forms;
mod workbench_page;
