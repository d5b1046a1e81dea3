//! The MAPI interfaces the samples implement, declared with windows-core's
//! `#[interface]` under their real IIDs (`mapiguid.h`). Each declares only
//! the methods the samples need, so the vtables are shorter than MAPI's:
//! these objects talk to the sample host, not to a real MAPI subsystem.
#![allow(non_snake_case, missing_docs)]

use std::ffi::c_void;

use windows_core::{HRESULT, IUnknown, IUnknown_Vtbl, interface};

#[interface("00020310-0000-0000-C000-000000000046")]
pub unsafe trait IMSProvider: IUnknown {
    pub fn Logon(
        &self,
        support: *mut c_void,
        logon: *mut Option<IMSLogon>,
        store: *mut Option<IMsgStore>,
    ) -> HRESULT;
    pub fn Shutdown(&self, flags: *mut u32) -> HRESULT;
}

#[interface("00020313-0000-0000-C000-000000000046")]
pub unsafe trait IMSLogon: IUnknown {
    pub fn Logoff(&self, flags: *mut u32) -> HRESULT;
    pub fn OpenStatusEntry(&self, status: *mut Option<IMAPIStatus>) -> HRESULT;
}

#[interface("00020306-0000-0000-C000-000000000046")]
pub unsafe trait IMsgStore: IUnknown {
    pub fn OpenRootFolder(&self, folder: *mut Option<IMAPIFolder>) -> HRESULT;
    /// Stands in for the work a client triggers (a send/receive, a view refresh).
    pub fn Synchronize(&self, flags: u32) -> HRESULT;
    pub fn StoreLogoff(&self, flags: *mut u32) -> HRESULT;
}

#[interface("0002030C-0000-0000-C000-000000000046")]
pub unsafe trait IMAPIFolder: IUnknown {
    pub fn GetContentsTable(&self, flags: u32, table: *mut Option<IMAPITable>) -> HRESULT;
    pub fn CreateMessage(&self, flags: u32, message: *mut Option<IMessage>) -> HRESULT;
}

#[interface("00020307-0000-0000-C000-000000000046")]
pub unsafe trait IMessage: IUnknown {
    pub fn CreateAttach(
        &self,
        flags: u32,
        number: *mut u32,
        attach: *mut Option<IAttach>,
    ) -> HRESULT;
}

#[interface("00020308-0000-0000-C000-000000000046")]
pub unsafe trait IAttach: IUnknown {
    pub fn GetAttachNum(&self, number: *mut u32) -> HRESULT;
}

#[interface("00020301-0000-0000-C000-000000000046")]
pub unsafe trait IMAPITable: IUnknown {
    pub fn GetRowCount(&self, flags: u32, count: *mut u32) -> HRESULT;
}

#[interface("00020305-0000-0000-C000-000000000046")]
pub unsafe trait IMAPIStatus: IUnknown {
    pub fn ValidateState(&self, ui_param: usize, flags: u32) -> HRESULT;
    /// `IMAPIProp::OpenProperty(PR_..., IID_IMAPITable)` in a real provider.
    pub fn OpenTable(&self, flags: u32, table: *mut Option<IMAPITable>) -> HRESULT;
}

#[interface("00020311-0000-0000-C000-000000000046")]
pub unsafe trait IABProvider: IUnknown {
    pub fn Logon(&self, support: *mut c_void, logon: *mut Option<IABLogon>) -> HRESULT;
    pub fn Shutdown(&self, flags: *mut u32) -> HRESULT;
}

#[interface("00020314-0000-0000-C000-000000000046")]
pub unsafe trait IABLogon: IUnknown {
    pub fn Logoff(&self, flags: u32) -> HRESULT;
    pub fn OpenStatusEntry(&self, status: *mut Option<IMAPIStatus>) -> HRESULT;
    pub fn OpenRootContainer(&self, container: *mut Option<IABContainer>) -> HRESULT;
}

#[interface("0002030D-0000-0000-C000-000000000046")]
pub unsafe trait IABContainer: IUnknown {
    pub fn GetContentsTable(&self, flags: u32, table: *mut Option<IMAPITable>) -> HRESULT;
    pub fn OpenDistList(&self, flags: u32, list: *mut Option<IDistList>) -> HRESULT;
    pub fn ResolveNames(&self, flags: u32) -> HRESULT;
}

#[interface("0002030E-0000-0000-C000-000000000046")]
pub unsafe trait IDistList: IUnknown {
    pub fn OpenMember(&self, index: u32, user: *mut Option<IMailUser>) -> HRESULT;
}

#[interface("0002030A-0000-0000-C000-000000000046")]
pub unsafe trait IMailUser: IUnknown {
    pub fn GetAddressType(&self, kind: *mut u32) -> HRESULT;
}

#[interface("00020312-0000-0000-C000-000000000046")]
pub unsafe trait IXPProvider: IUnknown {
    pub fn TransportLogon(&self, support: *mut c_void, logon: *mut Option<IXPLogon>) -> HRESULT;
    pub fn Shutdown(&self, flags: *mut u32) -> HRESULT;
}

#[interface("00020315-0000-0000-C000-000000000046")]
pub unsafe trait IXPLogon: IUnknown {
    pub fn TransportLogoff(&self, flags: u32) -> HRESULT;
    pub fn OpenStatusEntry(&self, status: *mut Option<IMAPIStatus>) -> HRESULT;
    pub fn Poll(&self, incoming: *mut u32) -> HRESULT;
}

/// The support object MAPI hands a provider at Logon (the host implements it).
#[interface("0002030F-0000-0000-C000-000000000046")]
pub unsafe trait IMAPISupport: IUnknown {
    pub fn Subscribe(&self, connection: *mut u32) -> HRESULT;
    pub fn Unsubscribe(&self, connection: u32) -> HRESULT;
    pub fn SetProviderUID(&self) -> HRESULT;
    pub fn ModifyStatusRow(&self) -> HRESULT;
    pub fn MakeInvalid(&self) -> HRESULT;
    pub fn StoreLogoffTransports(&self, flags: *mut u32) -> HRESULT;
}

/// `IUnknown_Vtbl` is re-exported for the hand-written status object.
pub type UnknownVtbl = IUnknown_Vtbl;
