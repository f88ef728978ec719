//! The gate: the one place that decides whether a principal may do something.
//!
//! Every HTTP route, every WebSocket request, every delivery of an event to a subscriber and
//! every history read asks [`Gate::authorize`]. What it returns, [`Authorized`], can be built
//! nowhere else, and the operations that act on rooms take one, so no handler can run an action
//! without a decision for that very action (the type parameter names it).
//!
//! Today's rules are the foundation's: the principal must be an active member (guaranteed by
//! [`Principal`]), and room actions other than joining need membership of the room. The
//! attribute-based policy plugs in here, behind the same signature.

use std::marker::PhantomData;
use std::sync::Arc;

use escape_proto::{ErrorCode, RoomName};

use crate::error::ApiError;
use crate::identity::Principal;
use crate::store::{Store, keys};

/// What the gate needs to know about an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionKind {
    ReadSelf,
    ListRooms,
    CreateRoom,
    JoinRoom,
    LeaveRoom,
    ReadHistory,
    Subscribe,
    Send,
    /// Handing one stored event to one subscriber. Checked per recipient, per event.
    Deliver,
}

mod sealed {
    pub trait Sealed {}
}

/// A type naming one action, so that `Authorized<Send>` cannot be passed where
/// `Authorized<ReadHistory>` is required.
pub trait Action: sealed::Sealed {
    const KIND: ActionKind;
    /// What the action is on: the deployment as a whole, or one room.
    type Resource: Resource;
}

/// A resource the gate can decide on.
pub trait Resource: Clone + std::fmt::Debug {
    fn room(&self) -> Option<&RoomName>;
}

/// The deployment itself, for actions that are not about one room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deployment;

impl Resource for Deployment {
    fn room(&self) -> Option<&RoomName> {
        None
    }
}

impl Resource for RoomName {
    fn room(&self) -> Option<&RoomName> {
        Some(self)
    }
}

macro_rules! actions {
    ($($name:ident => $resource:ty),* $(,)?) => {
        /// One marker type per action.
        pub mod action {
            $(
                #[derive(Debug, Clone, Copy)]
                pub struct $name;
                impl super::sealed::Sealed for $name {}
                impl super::Action for $name {
                    const KIND: super::ActionKind = super::ActionKind::$name;
                    type Resource = $resource;
                }
            )*
        }
    };
}

actions! {
    ReadSelf => super::Deployment,
    ListRooms => super::Deployment,
    CreateRoom => super::Deployment,
    JoinRoom => escape_proto::RoomName,
    LeaveRoom => escape_proto::RoomName,
    ReadHistory => escape_proto::RoomName,
    Subscribe => escape_proto::RoomName,
    Send => escape_proto::RoomName,
    Deliver => escape_proto::RoomName,
}

/// Proof that the gate allowed `principal` to perform `A` on `resource`. Only the gate makes one.
#[derive(Debug, Clone)]
pub struct Authorized<A: Action> {
    principal: Principal,
    resource: A::Resource,
    _action: PhantomData<A>,
}

impl<A: Action> Authorized<A> {
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    pub fn resource(&self) -> &A::Resource {
        &self.resource
    }
}

#[derive(Debug, Clone)]
pub struct Gate {
    store: Arc<dyn Store>,
}

impl Gate {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Decides. Deny by default: each action kind below lists what it needs.
    pub fn authorize<A: Action>(
        &self,
        principal: &Principal,
        resource: A::Resource,
    ) -> Result<Authorized<A>, ApiError> {
        match A::KIND {
            ActionKind::ReadSelf | ActionKind::ListRooms | ActionKind::CreateRoom => {}
            ActionKind::JoinRoom => {
                self.room_exists(&resource)?;
            }
            ActionKind::LeaveRoom
            | ActionKind::ReadHistory
            | ActionKind::Subscribe
            | ActionKind::Send
            | ActionKind::Deliver => {
                self.room_exists(&resource)?;
                self.is_member(principal, &resource)?;
            }
        }
        Ok(Authorized {
            principal: principal.clone(),
            resource,
            _action: PhantomData,
        })
    }

    fn room_exists(&self, resource: &impl Resource) -> Result<(), ApiError> {
        let Some(room) = resource.room() else {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "this action needs a room",
            ));
        };
        if self.store.get(&keys::room(room))?.is_none() {
            return Err(ApiError::new(
                ErrorCode::RoomNotFound,
                format!("there is no room {room}"),
            ));
        }
        Ok(())
    }

    fn is_member(&self, principal: &Principal, resource: &impl Resource) -> Result<(), ApiError> {
        let Some(room) = resource.room() else {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "this action needs a room",
            ));
        };
        if self
            .store
            .get(&keys::room_member(room, principal.id()))?
            .is_none()
        {
            return Err(ApiError::new(
                ErrorCode::NotAMember,
                format!("you are not a member of {room}; join it first"),
            ));
        }
        Ok(())
    }
}
