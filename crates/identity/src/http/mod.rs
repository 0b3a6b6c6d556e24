//! The identity HTTP API and its OpenAPI description.

mod users;

use axum::Router;
use sneakerstop_auth::SecuritySchemes;
use utoipa::OpenApi;

use crate::AppState;

/// OpenAPI description of the identity endpoints.
#[derive(Debug, OpenApi)]
#[openapi(
    paths(
        users::signup,
        users::signin,
        users::signout,
        users::signout_get,
        users::signout_everywhere,
        users::change_password,
        users::current_user
    ),
    components(schemas(users::Credentials, users::PasswordChange, users::SessionsEnded, users::UserView, users::CurrentUserView, sneakerstop_problem::Problem, sneakerstop_problem::FieldError)),
    modifiers(&SecuritySchemes),
    tags((name = "identity", description = "Accounts and sessions"))
)]
pub struct ApiDoc;

/// The identity router, ready to merge into the server.
pub fn app(state: AppState) -> Router {
    users::router().with_state(state)
}
