// Certificates for the emulator's TLS mode, generated at start-up with OpenSSL 3:
// a throw-away CA and a server certificate it signs. Clients verify the server
// exactly as they verify the real one, given the CA file.
#include "emulator/state.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <boost/asio/ip/address.hpp>

#include <memory>
#include <stdexcept>

namespace lens::emulator::detail {
namespace {

struct openssl_deleter {
    void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
    void operator()(X509* p) const { X509_free(p); }
    void operator()(BIO* p) const { BIO_free(p); }
    void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
};
template <class T>
using owned = std::unique_ptr<T, openssl_deleter>;

[[noreturn]] void fail(const char* what)
{
    char buf[256] = {};
    ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
    throw std::runtime_error(std::string("emulator TLS: ") + what + ": " + buf);
}

void check(int ok, const char* what)
{
    if (ok != 1)
        fail(what);
}

owned<EVP_PKEY> make_key()
{
    owned<EVP_PKEY> key(EVP_EC_gen("P-256"));
    if (!key)
        fail("EVP_EC_gen");
    return key;
}

void add_extension(X509* cert, X509* issuer, int nid, const std::string& value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
    owned<X509_EXTENSION> ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
    if (!ext)
        fail("X509V3_EXT_conf_nid");
    check(X509_add_ext(cert, ext.get(), -1), "X509_add_ext");
}

/// An unsigned certificate for `key`; issued by `issuer` (null: self-issued).
owned<X509> make_certificate(EVP_PKEY* key, const char* common_name, X509* issuer, long serial)
{
    owned<X509> cert(X509_new());
    if (!cert)
        fail("X509_new");
    check(X509_set_version(cert.get(), 2), "X509_set_version");
    check(ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial), "serial");
    // Back-date a little: the client's clock may be a hair behind ours.
    if (!X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) ||
        !X509_gmtime_adj(X509_getm_notAfter(cert.get()), 60L * 60 * 24 * 30))
        fail("X509_gmtime_adj");
    check(X509_set_pubkey(cert.get(), key), "X509_set_pubkey");
    X509_NAME* name = X509_get_subject_name(cert.get());
    check(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                     reinterpret_cast<const unsigned char*>("lens emulator"), -1, -1, 0),
          "subject O");
    check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                     reinterpret_cast<const unsigned char*>(common_name), -1, -1, 0),
          "subject CN");
    check(X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : name), "issuer");
    return cert;
}

std::string to_pem(X509* cert)
{
    owned<BIO> bio(BIO_new(BIO_s_mem()));
    check(PEM_write_bio_X509(bio.get(), cert), "PEM_write_bio_X509");
    char* data = nullptr;
    long n = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(n));
}

std::string to_pem(EVP_PKEY* key)
{
    owned<BIO> bio(BIO_new(BIO_s_mem()));
    check(PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr),
          "PEM_write_bio_PrivateKey");
    char* data = nullptr;
    long n = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(n));
}

} // namespace

generated_certificates generate_certificates(const std::string& host)
{
    // The CA: self-signed, allowed to sign only certificates.
    owned<EVP_PKEY> ca_key = make_key();
    owned<X509> ca = make_certificate(ca_key.get(), "lens emulator CA", nullptr, 1);
    add_extension(ca.get(), ca.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
    add_extension(ca.get(), ca.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
    add_extension(ca.get(), ca.get(), NID_subject_key_identifier, "hash");
    add_extension(ca.get(), ca.get(), NID_authority_key_identifier, "keyid:always");
    if (X509_sign(ca.get(), ca_key.get(), EVP_sha256()) <= 0)
        fail("X509_sign (CA)");

    // The server: a leaf for localhost, 127.0.0.1 and the configured host.
    std::string san = "DNS:localhost,IP:127.0.0.1";
    if (!host.empty() && host != "localhost" && host != "127.0.0.1") {
        boost::system::error_code ec;
        boost::asio::ip::make_address(host, ec);
        san += (ec ? ",DNS:" : ",IP:") + host;
    }
    owned<EVP_PKEY> key = make_key();
    owned<X509> cert = make_certificate(key.get(), "localhost", ca.get(), 2);
    add_extension(cert.get(), ca.get(), NID_basic_constraints, "critical,CA:FALSE");
    add_extension(cert.get(), ca.get(), NID_key_usage, "critical,digitalSignature,keyEncipherment");
    add_extension(cert.get(), ca.get(), NID_ext_key_usage, "serverAuth");
    add_extension(cert.get(), ca.get(), NID_subject_alt_name, san);
    add_extension(cert.get(), ca.get(), NID_subject_key_identifier, "hash");
    add_extension(cert.get(), ca.get(), NID_authority_key_identifier, "keyid:always");
    if (X509_sign(cert.get(), ca_key.get(), EVP_sha256()) <= 0)
        fail("X509_sign (server)");

    return {to_pem(ca.get()), to_pem(cert.get()), to_pem(key.get())};
}

} // namespace lens::emulator::detail
