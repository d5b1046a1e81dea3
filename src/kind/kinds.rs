//! The MAPI interfaces, predeclared with their IIDs (`mapiguid.h`).
//!
//! History is off by default for all of them; turn it on per kind with
//! [`Kind::set_history`](crate::Kind::set_history) or `MAPILEAK_HISTORY`.

crate::declare_kind! {
    /// `IABProvider`: an address book provider object.
    pub static IAB_PROVIDER = ("IABProvider", 0x00020311_0000_0000_c000_000000000046, Provider, history: false);
    /// `IMSProvider`: a message store provider object.
    pub static IMS_PROVIDER = ("IMSProvider", 0x00020310_0000_0000_c000_000000000046, Provider, history: false);
    /// `IXPProvider`: a transport provider object.
    pub static IXP_PROVIDER = ("IXPProvider", 0x00020312_0000_0000_c000_000000000046, Provider, history: false);
    /// `IABLogon`: an address book logon.
    pub static IAB_LOGON = ("IABLogon", 0x00020314_0000_0000_c000_000000000046, Logon, history: false);
    /// `IMSLogon`: a message store logon.
    pub static IMS_LOGON = ("IMSLogon", 0x00020313_0000_0000_c000_000000000046, Logon, history: false);
    /// `IMsgStore`: the store object handed to the client with an `IMSLogon`.
    pub static IMSG_STORE = ("IMsgStore", 0x00020306_0000_0000_c000_000000000046, Logon, history: false);
    /// `IXPLogon`: a transport logon.
    pub static IXP_LOGON = ("IXPLogon", 0x00020315_0000_0000_c000_000000000046, Logon, history: false);
    /// `IMAPIStatus`: a status object.
    pub static IMAPI_STATUS = ("IMAPIStatus", 0x00020305_0000_0000_c000_000000000046, Object, history: false);
    /// `IMAPITable`: contents, hierarchy, attachment, one-off and status tables.
    pub static IMAPI_TABLE = ("IMAPITable", 0x00020301_0000_0000_c000_000000000046, Object, history: false);
    /// `IMAPIProp`: a generic property object.
    pub static IMAPI_PROP = ("IMAPIProp", 0x00020303_0000_0000_c000_000000000046, Object, history: false);
    /// `IMAPIContainer`: a generic container.
    pub static IMAPI_CONTAINER = ("IMAPIContainer", 0x0002030b_0000_0000_c000_000000000046, Object, history: false);
    /// `IMAPIFolder`: a message store folder.
    pub static IMAPI_FOLDER = ("IMAPIFolder", 0x0002030c_0000_0000_c000_000000000046, Object, history: false);
    /// `IABContainer`: an address book container.
    pub static IAB_CONTAINER = ("IABContainer", 0x0002030d_0000_0000_c000_000000000046, Object, history: false);
    /// `IMessage`: a message.
    pub static IMESSAGE = ("IMessage", 0x00020307_0000_0000_c000_000000000046, Object, history: false);
    /// `IAttach`: an attachment.
    pub static IATTACH = ("IAttach", 0x00020308_0000_0000_c000_000000000046, Object, history: false);
    /// `IMailUser`: a messaging user.
    pub static IMAIL_USER = ("IMailUser", 0x0002030a_0000_0000_c000_000000000046, Object, history: false);
    /// `IDistList`: a distribution list.
    pub static IDIST_LIST = ("IDistList", 0x0002030e_0000_0000_c000_000000000046, Object, history: false);
    /// `IMAPIAdviseSink`: an advise sink or notification connection.
    pub static IMAPI_ADVISE_SINK = ("IMAPIAdviseSink", 0x00020302_0000_0000_c000_000000000046, Object, history: false);
    /// `IStream`: a property stream.
    pub static ISTREAM = ("IStream", 0x0000000c_0000_0000_c000_000000000046, Object, history: false);
    /// `IStorage`: a property storage.
    pub static ISTORAGE = ("IStorage", 0x0000000b_0000_0000_c000_000000000046, Object, history: false);
}

/// The kinds above. Lookups go through this list as well as `inventory`'s:
/// a static library linked into a C or C++ provider keeps only the archive
/// members something references, so link-time registration alone can miss
/// them.
pub(crate) static PREDECLARED: [&crate::Kind; 20] = [
    &IAB_PROVIDER,
    &IMS_PROVIDER,
    &IXP_PROVIDER,
    &IAB_LOGON,
    &IMS_LOGON,
    &IMSG_STORE,
    &IXP_LOGON,
    &IMAPI_STATUS,
    &IMAPI_TABLE,
    &IMAPI_PROP,
    &IMAPI_CONTAINER,
    &IMAPI_FOLDER,
    &IAB_CONTAINER,
    &IMESSAGE,
    &IATTACH,
    &IMAIL_USER,
    &IDIST_LIST,
    &IMAPI_ADVISE_SINK,
    &ISTREAM,
    &ISTORAGE,
];
