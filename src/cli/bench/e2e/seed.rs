//! The businesses `bench e2e` stores into: companies with a called number, a Cal.com event
//! type and a Stripe customer each, all with the run's tag in them, so a database that
//! already holds an earlier run's rows takes this run's as well.

use switchboard_jobs::store::{Store, StoreError, companies};

/// A seeded business: what deliveries address it by.
#[derive(Debug, Clone)]
pub struct Business {
    pub company_id: i64,
    /// The number its calls dial (`to_number`).
    pub number: String,
    /// Its branch's Cal.com event type.
    pub event_type: i64,
    /// Its Stripe customer.
    pub stripe_customer: String,
}

/// Seed `n` businesses for run `tag` (`tag_number` is the same tag as digits).
pub async fn businesses(
    store: &Store,
    tag: &str,
    tag_number: u32,
    n: usize,
) -> Result<Vec<Business>, StoreError> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let stripe_customer = format!("cus_bench{tag}{i:04}");
        let company_id = companies::insert_company(
            store,
            &companies::NewCompany {
                name: format!("Bench business {tag} {i}"),
                locale: "en".into(),
                timezone: "America/Los_Angeles".into(),
                admin_email: Some(format!("owner{i}@bench{tag}.example")),
                admin_phone: None,
                stripe_customer_id: Some(stripe_customer.clone()),
                calcom_api_key: None,
            },
        )
        .await?;
        let event_type = i64::from(tag_number) * 10_000 + i as i64;
        let branch = companies::insert_branch(
            store,
            company_id,
            "Main",
            Some(event_type),
            "America/Los_Angeles",
        )
        .await?;
        let number = format!("+1555{tag_number:010}{i:04}");
        companies::insert_phone_number(store, branch, &number).await?;
        out.push(Business {
            company_id,
            number,
            event_type,
            stripe_customer,
        });
    }
    Ok(out)
}
